"""Engine creation and the one function that opens a unit of work.

A unit of work is a connection inside a transaction that rolls back unless the
caller commits explicitly: an exception anywhere leaves the ledger untouched.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
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
