"""Engine creation, units of work, and the database's liveness ping.

A unit of work is a connection inside a transaction that rolls back unless the
caller commits explicitly: an exception anywhere leaves the ledger untouched.
`UnitOfWork` is what the synchronous use cases (`services/*/use_cases.py`) take
instead of the engine, so the HTTP controllers never open transactions themselves.

`ReadPool` is the ingress's path for its hot single-statement reads (balance, history,
a command's status): plain asyncpg, no transaction, no pre-ping and no reset query,
one round trip per read where SQLAlchemy's pooled connection costs seven (a
pre-ping of three, BEGIN, the statement, ROLLBACK); see docs/benchmarks.md, "HTTP".
"""

import functools
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.metrics import DB_ROUND_TRIPS
from services.settings import Settings


def make_engine(settings: Settings, pool_size: int = 10, pre_ping: bool = True) -> AsyncEngine:
    """`pre_ping=False` for the ledger worker: it retries a batch on a dead connection
    anyway, and a ping is one more round trip per batch."""
    return create_async_engine(
        settings.async_database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
    )


_ASYNCPG = asyncpg_dialect()
_STATEMENTS = DB_ROUND_TRIPS.labels(kind="statement")
# A pooled connection that died under us (Postgres restarted, a proxy cut it): a read is
# safe to run again once, on a fresh connection.
CONNECTION_LOST = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError, OSError)


@functools.cache
def positional(statement: TextClause) -> tuple[str, tuple[str, ...]]:
    """`statement` in asyncpg's `$n` form, and its parameter names in `$n` order."""
    compiled = statement.compile(dialect=_ASYNCPG)
    return str(compiled), tuple(compiled.positiontup or ())


async def _json_codecs(conn: asyncpg.Connection) -> None:
    """json/jsonb as Python values, as SQLAlchemy's dialect reads them."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """The pool's reset: a read connection keeps no session state (no SET, LISTEN or
    lock), so asyncpg's default reset query (a round trip per release) is skipped; a
    transaction left open by a failed read is rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class ReadPool:
    """Single-statement reads on plain asyncpg (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, settings: Settings, size: int = 10) -> "ReadPool":
        """Connects lazily (min_size 0): an ingress starts while Postgres is still down."""
        pool = await asyncpg.create_pool(
            settings.plain_database_url, min_size=0, max_size=size, init=_json_codecs,
            reset=_nothing_to_reset, max_inactive_connection_lifetime=1800,
        )
        return cls(pool)

    async def rows(self, statement: TextClause, params: Mapping[str, Any]) -> Sequence[Mapping[Any, Any]]:
        """The statement's rows (asyncpg Records: read by column name), retried once on a
        connection that turned out dead."""
        query, names = positional(statement)
        args = [params[name] for name in names]
        _STATEMENTS.inc()
        try:
            return await self.pool.fetch(query, *args)
        except CONNECTION_LOST:
            return await self.pool.fetch(query, *args)

    async def close(self) -> None:
        await self.pool.close()


Reader = AsyncConnection | ReadPool
"""Where a read runs: a SQLAlchemy connection (inside a use case's transaction) or the pool."""


async def rows_of(
    source: Reader, statement: TextClause, params: Mapping[str, Any]
) -> Sequence[Mapping[Any, Any]]:
    """`statement`'s rows from either kind of reader, read by column name."""
    if isinstance(source, ReadPool):
        return await source.rows(statement, params)
    return (await source.execute(statement, dict(params))).mappings().all()


@asynccontextmanager
async def unit_of_work(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Yield a connection in a transaction; commit is the caller's explicit act."""
    async with engine.connect() as conn:
        await conn.begin()
        try:
            yield conn
        finally:
            if conn.in_transaction():
                await conn.rollback()


@dataclass(frozen=True)
class UnitOfWork:
    """The database as a use case sees it: one block per use case, either a transaction
    that commits when the block ends without an error (`begin`) or a connection for
    reads (`read`, rolled back on close). Holding this rather than the engine keeps
    the choice of transaction with the use case, not with its caller."""

    engine: AsyncEngine
    reads: ReadPool | None = None  # the ingress's; others read through the engine

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction: committed at the end of the block, rolled back on an error."""
        return self.engine.begin()

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads; whatever it did is rolled back when it closes."""
        return self.engine.connect()

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Reader]:
        """Where a single-statement read runs: the read pool when there is one (no
        transaction, one round trip), else a connection as `read` gives it."""
        if self.reads is not None:
            yield self.reads
            return
        async with self.engine.connect() as conn:
            yield conn


async def ping_database(engine: AsyncEngine) -> None:
    """One round trip (`SELECT 1`): raises when Postgres does not answer."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def ensure_database(plain_url: str) -> bool:
    """Create the database named in the URL when it does not exist; True if created."""
    parts = urlsplit(plain_url)
    name = parts.path.lstrip("/") or "postgres"
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        await conn.execute(f"CREATE DATABASE {quoted}")
        return True
    finally:
        await conn.close()
