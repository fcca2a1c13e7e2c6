"""One batch's story: the batch, and every allocation against it.

Every change of a batch's `remaining` is an allocation row (spends, holds, returns,
expiry, take-backs, rollovers, transfers), so the creating transaction's allocations
(`amount`) plus all the others equal `remaining`. Credits taken from a batch that came
back after it expired went to a fresh REFUNDED batch: listed apart (`origin_batch_id`).
Both reads use the allocations' `coalesce(origin_batch_id, batch_id)` index: every
allocation against a batch but its creation's names it there.
"""

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

BATCH = text(
    """
    SELECT b.id, b.user_id, b.source, b.status, b.amount, b.remaining, b.acquired_at,
           b.expires_at, b.transaction_id, t.type AS transaction_type, b.purchase_id,
           b.source_ref
      FROM credit_batches b JOIN ledger_transactions t ON t.id = b.transaction_id
     WHERE b.id = :id
    """
)
MOVEMENTS = text(
    """
    SELECT al.transaction_id, t.type AS transaction_type, al.amount AS credits, t.reference,
           t.created_at, al.debit_transaction_id
      FROM batch_allocations al JOIN ledger_transactions t ON t.id = al.transaction_id
     WHERE coalesce(al.origin_batch_id, al.batch_id) = :id AND al.batch_id = :id
       AND al.transaction_id <> :created_by
     ORDER BY t.seq, al.id
    """
)
RETURNED_ELSEWHERE = text(
    """
    SELECT al.transaction_id, t.type AS transaction_type, al.batch_id, al.amount AS credits,
           t.created_at
      FROM batch_allocations al JOIN ledger_transactions t ON t.id = al.transaction_id
     WHERE coalesce(al.origin_batch_id, al.batch_id) = :id AND al.batch_id <> :id
     ORDER BY t.seq, al.id
    """
)


async def batch(conn: AsyncConnection, batch_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await conn.execute(BATCH, {"id": batch_id})).mappings().first()
    return dict(row) if row else None


async def movements(
    conn: AsyncConnection, batch_id: uuid.UUID, created_by: uuid.UUID
) -> list[dict[str, Any]]:
    """Allocations against the batch other than its creation's, oldest first."""
    rows = await conn.execute(MOVEMENTS, {"id": batch_id, "created_by": created_by})
    return [dict(r) for r in rows.mappings()]


async def returned_elsewhere(conn: AsyncConnection, batch_id: uuid.UUID) -> list[dict[str, Any]]:
    """Returns of credits first taken from the batch that landed in another batch."""
    rows = await conn.execute(RETURNED_ELSEWHERE, {"id": batch_id})
    return [dict(r) for r in rows.mappings()]
