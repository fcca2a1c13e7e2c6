"""The suite's database: its private name on the configured server, and a connection to it.

The connection must outlive scenario (b), which restarts the server under it.
"""

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def server_address(url: str) -> tuple[str, int]:
    """Host and port of the server behind a plain Postgres URL (libpq's defaults if absent)."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 5432


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class ReconnectingDb:
    """One asyncpg connection that reconnects after a failure (Postgres restarts here)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: asyncpg.Connection | None = None
        self.lock = asyncio.Lock()

    async def fetch(self, sql: str, *args: Any, timeout: float = 30) -> list[asyncpg.Record]:
        async with self.lock:
            try:
                if self.conn is None or self.conn.is_closed():
                    self.conn = await asyncpg.connect(self.url, timeout=min(5, timeout))
                rows: list[asyncpg.Record] = await self.conn.fetch(sql, *args, timeout=timeout)
                return rows
            except BaseException:
                await self._drop()
                raise

    async def _drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.terminate()
        self.conn = None

    async def close(self) -> None:
        async with self.lock:
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    await self.conn.close(timeout=2)
            self.conn = None
