"""The balance explanation's reads: a user's transactions newest first (their own and
those where they are the counterparty, as in the history), each transaction's postings
on every account, and what it took from or gave to which batch.

Pages are keyed by the transactions' sequence number, with the history's cursor.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger.queries import decode_cursor, encode_cursor

# `{since}` bounds the sequence numbers, `{order}` is the direction the page is read in.
TRANSACTIONS = """
    WITH mine AS (
        (SELECT seq FROM ledger_transactions WHERE user_id = :u {since} ORDER BY seq {order}
          LIMIT :limit)
        UNION
        (SELECT seq FROM ledger_transactions WHERE counterparty_user_id = :u {since}
          ORDER BY seq {order} LIMIT :limit)
    )
    SELECT t.id, t.seq, t.type, t.status, t.user_id, t.counterparty_user_id, t.credits,
           t.amount_minor AS amount, t.currency, t.stripe_payment_intent_id, t.reference,
           t.related_transaction_id, t.hold_id, t.metadata, t.created_at,
           p.available_change, p.held_change, p.available_after, p.held_after
      FROM ledger_transactions t
      JOIN mine USING (seq)
      JOIN LATERAL (
          SELECT coalesce(sum(amount) FILTER (WHERE bucket = 'available'), 0)::bigint
                     AS available_change,
                 coalesce(sum(amount) FILTER (WHERE bucket = 'held'), 0)::bigint AS held_change,
                 max(available_after) AS available_after, max(held_after) AS held_after
            FROM postings WHERE transaction_id = t.id AND account_id = :account
      ) p ON true
     ORDER BY t.seq {order} LIMIT :limit
"""
POSTINGS = text(
    """
    SELECT p.transaction_id, coalesce(a.user_id, a.system_code) AS account,
           CASE WHEN a.user_id IS NULL THEN 'system' ELSE 'user' END AS account_kind,
           p.bucket, p.amount
      FROM postings p JOIN accounts a ON a.id = p.account_id
     WHERE p.transaction_id = ANY(CAST(:ids AS uuid[]))
     ORDER BY p.transaction_id, p.id
    """
)
ALLOCATIONS = text(
    """
    SELECT al.transaction_id, al.batch_id, b.user_id AS batch_user_id, al.amount AS credits,
           b.source AS batch_source, b.expires_at AS batch_expires_at, b.purchase_id,
           al.origin_batch_id, al.debit_transaction_id
      FROM batch_allocations al JOIN credit_batches b ON b.id = al.batch_id
     WHERE al.transaction_id = ANY(CAST(:ids AS uuid[]))
     ORDER BY al.transaction_id, al.id
    """
)


def _row(r: Any) -> dict[str, Any]:
    row = dict(r)
    if row["currency"]:
        row["currency"] = row["currency"].strip()
    return row


async def transactions(
    conn: AsyncConnection, user_id: str, account_id: int, *, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page newest first, with this account's change and stored balances after each
    (None where it has no posting on the account), and the cursor of the next page."""
    params: dict[str, Any] = {"u": user_id, "account": account_id, "limit": limit + 1}
    since = ""
    if cursor:
        params["before"] = decode_cursor(cursor)
        since = "AND seq < :before"
    sql = TRANSACTIONS.format(since=since, order="DESC")
    rows = [_row(r) for r in (await conn.execute(text(sql), params)).mappings()]
    next_cursor = encode_cursor(rows[limit - 1]["seq"]) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def newer_neighbours(
    conn: AsyncConnection, user_id: str, account_id: int, cursor: str, count: int
) -> list[dict[str, Any]]:
    """The `count` transactions just newer than a page's cursor, newest first: a page's
    running balance may continue one that began above it (see `running_balance`)."""
    params = {"u": user_id, "account": account_id, "limit": count, "from": decode_cursor(cursor)}
    sql = TRANSACTIONS.format(since="AND seq >= :from", order="ASC")
    rows = [_row(r) for r in (await conn.execute(text(sql), params)).mappings()]
    return rows[::-1]


async def postings_of(
    conn: AsyncConnection, transaction_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """Every leg of each transaction, system accounts included, in the order written."""
    found: dict[uuid.UUID, list[dict[str, Any]]] = {i: [] for i in transaction_ids}
    if transaction_ids:
        for r in (await conn.execute(POSTINGS, {"ids": list(transaction_ids)})).mappings():
            found[r["transaction_id"]].append({k: v for k, v in r.items() if k != "transaction_id"})
    return found


async def allocations_of(
    conn: AsyncConnection, transaction_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """What each transaction took from (negative) or gave to (positive) each batch."""
    found: dict[uuid.UUID, list[dict[str, Any]]] = {i: [] for i in transaction_ids}
    if transaction_ids:
        for r in (await conn.execute(ALLOCATIONS, {"ids": list(transaction_ids)})).mappings():
            found[r["transaction_id"]].append({k: v for k, v in r.items() if k != "transaction_id"})
    return found
