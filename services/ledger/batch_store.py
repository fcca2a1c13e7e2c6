"""Credit batches (`credit_batches`) and what each transaction took from or gave to
them (`batch_allocations`); spending goes earliest expiry first.

A user's batches change only while their account row is locked (see account_store).
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger.models import Allocation

# One statement for all accounts: a running sum over each account's open batches in
# spend order decides how much each batch gives.
TAKE_FROM_BATCHES = text(
    """
    WITH req AS (
        SELECT * FROM unnest(CAST(:tx AS uuid[]), CAST(:account AS bigint[]),
                             CAST(:credits AS bigint[])) AS r(tx_id, account_id, credits)
    ), cand AS (
        SELECT b.id, b.expires_at, b.acquired_at, b.source, b.remaining, r.tx_id, r.credits,
               (sum(b.remaining) OVER (
                   PARTITION BY b.account_id
                   ORDER BY b.expires_at, b.acquired_at, b.id))::bigint AS upto
          FROM req r
          JOIN credit_batches b
            ON b.account_id = r.account_id AND b.status = 'open' AND b.remaining > 0
    ), take AS (
        SELECT id, expires_at, acquired_at, source, tx_id,
               LEAST(remaining, credits - (upto - remaining)) AS n
          FROM cand WHERE upto - remaining < credits
    ), upd AS (
        UPDATE credit_batches b SET remaining = b.remaining - t.n
          FROM take t WHERE b.id = t.id
    ), ins AS (
        INSERT INTO batch_allocations (transaction_id, batch_id, amount)
        SELECT tx_id, id, -n FROM take
    )
    SELECT tx_id, id, n, expires_at, source FROM take
     ORDER BY tx_id, expires_at, acquired_at, id
    """
)
# clock_timestamp(), not the column default now(): now() is fixed for the whole DB
# transaction, so batches granted to one user in one worker batch would tie on
# acquired_at and be spent in random id order instead of oldest first.
INSERT_BATCH = text(
    """
    INSERT INTO credit_batches (id, account_id, user_id, source, amount, remaining,
                                acquired_at, expires_at, transaction_id, source_ref,
                                purchase_id)
    VALUES (:id, :account, :user_id, :source, :credits, :credits, clock_timestamp(),
            :expires_at, :tx, :ref, :purchase)
    """
)
# The same, set-based: one row per new batch, in the order given (clock_timestamp()
# per row keeps acquired_at increasing in that order).
INSERT_BATCHES = text(
    """
    INSERT INTO credit_batches (id, account_id, user_id, source, amount, remaining,
                                acquired_at, expires_at, transaction_id, source_ref,
                                purchase_id)
    SELECT id, account, user_id, source, credits, credits, clock_timestamp(),
           expires_at, tx, ref, purchase
      FROM unnest(CAST(:id AS uuid[]), CAST(:account AS bigint[]), CAST(:user_id AS text[]),
                  CAST(:source AS text[]), CAST(:credits AS bigint[]),
                  CAST(:expires_at AS timestamptz[]), CAST(:tx AS uuid[]), CAST(:ref AS text[]),
                  CAST(:purchase AS uuid[]))
           WITH ORDINALITY AS b(id, account, user_id, source, credits, expires_at, tx, ref,
                                purchase, n)
     ORDER BY n
    """
)
INSERT_ALLOCATIONS = text(
    """
    INSERT INTO batch_allocations (transaction_id, batch_id, amount, origin_batch_id,
                                   debit_transaction_id)
    SELECT * FROM unnest(CAST(:tx AS uuid[]), CAST(:batch AS uuid[]),
                         CAST(:amount AS bigint[]), CAST(:origin AS uuid[]),
                         CAST(:debit AS uuid[]))
    """
)
LOCK_PURCHASE_BATCHES = text(
    """
    SELECT id, remaining, expires_at, source FROM credit_batches
     WHERE purchase_id = :purchase AND status = 'open'
     ORDER BY coalesce(array_position(CAST(:ids AS uuid[]), transaction_id), 1000),
              expires_at, id
       FOR UPDATE
    """
)
DEBIT_BATCHES = text(
    """
    UPDATE credit_batches b SET remaining = b.remaining + d.n
      FROM unnest(CAST(:batch AS uuid[]), CAST(:n AS bigint[])) AS d(id, n)
     WHERE b.id = d.id
    """
)
ADD_TO_BATCH_REMAINING = text("UPDATE credit_batches SET remaining = remaining + :n WHERE id = :id")
OUTSTANDING_BY_BATCH = text(
    """
    WITH taken AS (
        SELECT batch_id, -amount AS n FROM batch_allocations
         WHERE transaction_id = :debit AND amount < 0 AND origin_batch_id IS NULL
    ), returned AS (
        SELECT origin_batch_id AS batch_id, sum(amount)::bigint AS n FROM batch_allocations
         WHERE debit_transaction_id = :debit GROUP BY origin_batch_id
    )
    SELECT b.id, t.n - coalesce(r.n, 0) AS outstanding, b.status, b.expires_at,
           b.source, b.purchase_id
      FROM taken t
      JOIN credit_batches b ON b.id = t.batch_id
      LEFT JOIN returned r ON r.batch_id = t.batch_id
     WHERE t.n - coalesce(r.n, 0) > 0
     ORDER BY b.expires_at DESC, b.acquired_at DESC, b.id DESC
    """
)
LOCK_BATCH = text(
    "SELECT id, account_id, user_id, remaining, status, expires_at, source "
    "FROM credit_batches WHERE id = :id FOR UPDATE"
)
EXPIRE_BATCH = text("UPDATE credit_batches SET remaining = 0, status = 'expired' WHERE id = :id")


def take_rows(takes: Sequence[tuple[uuid.UUID, int, int]]) -> dict[str, Any]:
    """TAKE_FROM_BATCHES' parameters for (transaction id, account id, credits)."""
    return {
        "tx": [t[0] for t in takes],
        "account": [t[1] for t in takes],
        "credits": [t[2] for t in takes],
    }


def check_taken(takes: Sequence[tuple[uuid.UUID, int, int]], allocations: Sequence[Allocation]) -> None:
    """Raise unless the batches gave each transaction all it asked for.

    The caller has checked the balance; a shortfall means the balance and the batches
    disagree.
    """
    taken: dict[uuid.UUID, int] = {}
    for allocation in allocations:
        taken[allocation.transaction_id] = (
            taken.get(allocation.transaction_id, 0) - allocation.amount
        )
    for tx_id, _account, credits in takes:
        if taken.get(tx_id, 0) != credits:
            raise RuntimeError(
                f"batches gave {taken.get(tx_id, 0)} of {credits} credits for {tx_id}: "
                "balance and batches disagree; run `pika-payment reconcile`"
            )


async def take_from_batches(
    conn: AsyncConnection, takes: Sequence[tuple[uuid.UUID, int, int]]
) -> list[Allocation]:
    """Debit (transaction id, account id, credits) from open batches, earliest expiry first."""
    if not takes:
        return []
    rows = await conn.execute(TAKE_FROM_BATCHES, take_rows(takes))
    allocations = [
        Allocation(row.tx_id, row.id, -row.n, row.expires_at, row.source) for row in rows
    ]
    check_taken(takes, allocations)
    return allocations


async def insert_batch(
    conn: AsyncConnection,
    *,
    batch_id: uuid.UUID,
    account_id: int,
    user_id: str,
    source: str,
    credits: int,
    expires_at: datetime,
    transaction_id: uuid.UUID,
    source_ref: str | None,
    purchase_id: uuid.UUID | None = None,
) -> None:
    await conn.execute(
        INSERT_BATCH,
        {
            "id": batch_id,
            "account": account_id,
            "user_id": user_id,
            "source": source,
            "credits": credits,
            "expires_at": expires_at,
            "tx": transaction_id,
            "ref": source_ref,
            "purchase": purchase_id,
        },
    )


@dataclass(frozen=True)
class NewBatch:
    """A batch a grant creates (INSERT_BATCHES' row)."""

    id: uuid.UUID
    account_id: int
    user_id: str
    source: str
    credits: int
    expires_at: datetime
    transaction_id: uuid.UUID
    source_ref: str | None
    purchase_id: uuid.UUID | None = None


async def insert_batches(conn: AsyncConnection, batches: Sequence[NewBatch]) -> None:
    """New batches, one statement for all of them, acquired in the order given."""
    if not batches:
        return
    await conn.execute(
        INSERT_BATCHES,
        {
            "id": [b.id for b in batches],
            "account": [b.account_id for b in batches],
            "user_id": [b.user_id for b in batches],
            "source": [b.source for b in batches],
            "credits": [b.credits for b in batches],
            "expires_at": [b.expires_at for b in batches],
            "tx": [b.transaction_id for b in batches],
            "ref": [b.source_ref for b in batches],
            "purchase": [b.purchase_id for b in batches],
        },
    )


def allocation_rows(allocations: Sequence[Allocation]) -> dict[str, Any]:
    """INSERT_ALLOCATIONS' parameters: one array per column."""
    return {
        "tx": [a.transaction_id for a in allocations],
        "batch": [a.batch_id for a in allocations],
        "amount": [a.amount for a in allocations],
        "origin": [a.origin_batch_id for a in allocations],
        "debit": [a.debit_transaction_id for a in allocations],
    }


async def insert_allocations(conn: AsyncConnection, allocations: Sequence[Allocation]) -> None:
    if not allocations:
        return
    await conn.execute(INSERT_ALLOCATIONS, allocation_rows(allocations))


@dataclass(frozen=True)
class OpenBatch:
    id: uuid.UUID
    remaining: int
    expires_at: datetime
    source: str


async def lock_purchase_batches(
    conn: AsyncConnection, purchase_id: uuid.UUID, first: Sequence[uuid.UUID] = ()
) -> list[OpenBatch]:
    """Open batches bought by a purchase: those granted by the transactions in `first`
    in that order (a refund takes gifts first), then the rest (returned credits)."""
    rows = await conn.execute(LOCK_PURCHASE_BATCHES, {"purchase": purchase_id, "ids": list(first)})
    return [OpenBatch(r.id, r.remaining, r.expires_at, r.source) for r in rows]


async def debit_batches(conn: AsyncConnection, allocations: Sequence[Allocation]) -> None:
    """Take the (negative) allocation amounts from their batches and record them."""
    if not allocations:
        return
    await conn.execute(
        DEBIT_BATCHES,
        {"batch": [a.batch_id for a in allocations], "n": [a.amount for a in allocations]},
    )
    await insert_allocations(conn, allocations)


async def add_to_batch_remaining(conn: AsyncConnection, batch_id: uuid.UUID, credits: int) -> None:
    await conn.execute(ADD_TO_BATCH_REMAINING, {"n": credits, "id": batch_id})


async def outstanding_by_batch(
    conn: AsyncConnection, debit_transaction_id: uuid.UUID
) -> list[tuple[uuid.UUID, int, str, datetime, str, uuid.UUID | None]]:
    """Credits a debit took per batch and has not yet got back, latest expiry first.

    Returns (batch id, outstanding, status, expires_at, source, purchase id); the latest-expiring
    batches come first so a partial return gives the user the longest-lived credits.
    """
    rows = await conn.execute(OUTSTANDING_BY_BATCH, {"debit": debit_transaction_id})
    return [(r.id, r.outstanding, r.status, r.expires_at, r.source, r.purchase_id) for r in rows]


async def lock_batch(conn: AsyncConnection, batch_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.execute(LOCK_BATCH, {"id": batch_id})
    found = row.mappings().first()
    return dict(found) if found else None


async def expire_batch_row(conn: AsyncConnection, batch_id: uuid.UUID) -> None:
    await conn.execute(EXPIRE_BATCH, {"id": batch_id})
