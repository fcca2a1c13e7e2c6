"""The `accounts` table: who has an account, its lock, and its balances.

A user's batches, holds and balance change only while their account row is locked
(`lock_accounts`), and accounts are locked in id order, so two workers touching the
same users cannot deadlock on each other's batches.
"""

from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger.models import Account

SYSTEM_ACCOUNTS = text("SELECT system_code, id FROM accounts WHERE system_code IS NOT NULL")
ENSURE_ACCOUNTS = text(
    "INSERT INTO accounts (user_id) SELECT DISTINCT unnest(CAST(:users AS text[])) "
    "ON CONFLICT (user_id) DO NOTHING"
)
LOCK_ACCOUNTS = text(
    "SELECT id, user_id, available, held FROM accounts "
    "WHERE user_id = ANY(CAST(:users AS text[])) ORDER BY id FOR UPDATE"
)
# Set-based: `UPDATE ... FROM` applies one matching row per account, so each account
# appears at most once (callers split repeats into rounds).
ADJUST_ACCOUNTS = text(
    """
    UPDATE accounts a
       SET available = a.available + d.avail, held = a.held + d.held
      FROM unnest(CAST(:ids AS bigint[]), CAST(:avail AS bigint[]),
                  CAST(:held AS bigint[])) AS d(id, avail, held)
     WHERE a.id = d.id
 RETURNING a.id, a.available, a.held
    """
)

_SYSTEM_ACCOUNTS: dict[str, dict[str, int]] = {}


async def system_accounts(conn: AsyncConnection) -> dict[str, int]:
    """Ids of the system accounts; created by the migration, so cached per database."""
    key = str(conn.engine.url)
    if key not in _SYSTEM_ACCOUNTS:
        rows = await conn.execute(SYSTEM_ACCOUNTS)
        _SYSTEM_ACCOUNTS[key] = {code: account_id for code, account_id in rows.all()}
    return _SYSTEM_ACCOUNTS[key]


async def ensure_accounts(conn: AsyncConnection, user_ids: Iterable[str]) -> None:
    await conn.execute(ENSURE_ACCOUNTS, {"users": sorted(set(user_ids))})


async def lock_accounts(conn: AsyncConnection, user_ids: Iterable[str]) -> dict[str, Account]:
    rows = await conn.execute(LOCK_ACCOUNTS, {"users": list(set(user_ids))})
    return {row.user_id: Account(row.id, row.user_id, row.available, row.held) for row in rows}


def adjustment_rows(deltas: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """ADJUST_ACCOUNTS' parameters for (available, held) deltas by account id."""
    ids = list(deltas)
    return {"ids": ids, "avail": [deltas[i][0] for i in ids], "held": [deltas[i][1] for i in ids]}


async def adjust_accounts(
    conn: AsyncConnection, deltas: dict[int, tuple[int, int]]
) -> dict[int, tuple[int, int]]:
    """Apply (available, held) deltas per user account; return balances after."""
    if not deltas:
        return {}
    rows = await conn.execute(ADJUST_ACCOUNTS, adjustment_rows(deltas))
    return {row.id: (row.available, row.held) for row in rows}
