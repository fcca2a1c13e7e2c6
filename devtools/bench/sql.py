"""The bench's connection, and the ledger's own statements run through plain asyncpg.

Funding and baseline (b) run the statements of the ledger's stores
(services/ledger/*_store.py) with the stores' row builders; `fetch` and `execute`
turn a statement's `:name` parameters into asyncpg's `$n` once per statement. Only
INSERT_BATCHES is the bench's own: the ledger grants one batch per command, funding
grants a thousand at once. Baseline (a)'s statements are fixed in baselines.py on
purpose and do not come from here.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from sqlalchemy import TextClause

from services.db import positional
from services.ledger.account_store import ADJUST_ACCOUNTS, SYSTEM_ACCOUNTS, adjustment_rows
from services.settings import Settings


@contextlib.asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """One asyncpg connection to the bench database, closed on the way out."""
    conn = await asyncpg.connect(settings.plain_database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def fetch(
    conn: asyncpg.Connection, statement: TextClause, params: dict[str, Any]
) -> list[asyncpg.Record]:
    query, names = positional(statement)
    return list(await conn.fetch(query, *(params[name] for name in names)))


async def execute(conn: asyncpg.Connection, statement: TextClause, params: dict[str, Any]) -> None:
    query, names = positional(statement)
    await conn.execute(query, *(params[name] for name in names))


async def system_accounts(conn: asyncpg.Connection) -> dict[str, int]:
    return {row["system_code"]: row["id"] for row in await fetch(conn, SYSTEM_ACCOUNTS, {})}


async def adjust_balances(
    conn: asyncpg.Connection, deltas: dict[int, tuple[int, int]]
) -> dict[int, tuple[int, int]]:
    """Apply (available, held) deltas by account: (available, held) after, by account."""
    rows = await fetch(conn, ADJUST_ACCOUNTS, adjustment_rows(deltas))
    return {r["id"]: (r["available"], r["held"]) for r in rows}


INSERT_BATCHES = """
    INSERT INTO credit_batches (id, account_id, user_id, source, amount, remaining, expires_at,
                                transaction_id, source_ref)
    SELECT b.id, b.account_id, b.user_id, 'PROMOTIONAL', b.n, b.n, b.expires_at, b.tx, b.ref
      FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::timestamptz[],
                  $6::uuid[], $7::text[]) AS b(id, account_id, user_id, n, expires_at, tx, ref)
"""
