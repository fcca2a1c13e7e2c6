"""Engine creation, units of work, and the database's liveness ping.

A unit of work is a connection inside a transaction that rolls back unless the
caller commits explicitly: an exception anywhere leaves the ledger untouched.
`UnitOfWork` is what the synchronous use cases (`services/*/use_cases.py`) take
instead of the engine, so the HTTP controllers never open transactions themselves.
"""

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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

    def begin(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction: committed at the end of the block, rolled back on an error."""
        return self.engine.begin()

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads; whatever it did is rolled back when it closes."""
        return self.engine.connect()


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
