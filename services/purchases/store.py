"""What a purchase owes and its disputes: the SQL of `claims` and `disputes`.

`owed_credits` is what a purchase must give back in all (its refunded share, or all of
it after a lost chargeback), `clawed_credits` what it got back so far, and
`shortfall_credits` the rest, still owed: the database checks it is always the
difference, and that nothing owed exceeds what the purchase granted.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CLAIMS = text(
    """
    SELECT p.id, p.user_id, p.shortfall_credits, p.payment_intent_id, p.grant_transaction_id,
           p.pack_id,
           (SELECT d.dispute_id FROM purchase_disputes d
             WHERE d.purchase_id = p.id AND d.status = 'open'
             ORDER BY d.opened_at, d.dispute_id LIMIT 1) AS open_dispute
      FROM purchases p WHERE p.id = ANY(CAST(:ids AS uuid[])) ORDER BY p.id FOR UPDATE OF p
    """
)
PAY_DEBT = text(
    "UPDATE purchases SET clawed_credits = clawed_credits + :n, "
    "shortfall_credits = shortfall_credits - :n, updated_at = now() WHERE id = :id"
)
OWE = text(
    """
    UPDATE purchases
       SET owed_credits = greatest(owed_credits, :owed),
           clawed_credits = clawed_credits + :clawed,
           shortfall_credits = greatest(owed_credits, :owed) - clawed_credits - :clawed,
           updated_at = now()
     WHERE id = :id
    RETURNING shortfall_credits
    """
)
DISPUTE = text("SELECT * FROM purchase_disputes WHERE dispute_id = :id FOR UPDATE")
OPEN_DISPUTE = text(
    "INSERT INTO purchase_disputes (dispute_id, purchase_id, user_id) VALUES (:id, :purchase, :u) "
    "ON CONFLICT (dispute_id) DO NOTHING RETURNING dispute_id"
)
ADD_FROZEN = text(
    "UPDATE purchase_disputes SET frozen_credits = frozen_credits + :n WHERE dispute_id = :id"
)
CLOSE_DISPUTE = text(
    "UPDATE purchase_disputes SET status = :status, closed_at = now() WHERE dispute_id = :id"
)


@dataclass(frozen=True)
class Claim:
    """A purchase as seen by credits coming back to its batches."""

    id: uuid.UUID
    user_id: str
    shortfall: int
    payment_intent_id: str | None
    grant_transaction_id: uuid.UUID | None
    pack_id: str
    open_dispute: str | None

    @classmethod
    def of(cls, purchase: dict[str, Any]) -> "Claim":
        """A purchase row already locked by its handler, as a claim (no dispute looked up)."""
        return cls(purchase["id"], purchase["user_id"], purchase["shortfall_credits"],
                   purchase["payment_intent_id"], purchase["grant_transaction_id"],
                   purchase["pack_id"], None)


async def lock_claims(conn: AsyncConnection, purchase_ids: Sequence[uuid.UUID]) -> list[Claim]:
    rows = await conn.execute(CLAIMS, {"ids": list(purchase_ids)})
    return [
        Claim(r.id, r.user_id, r.shortfall_credits, r.payment_intent_id, r.grant_transaction_id,
              r.pack_id, r.open_dispute)
        for r in rows
    ]


async def pay_debt(conn: AsyncConnection, purchase_id: uuid.UUID, credits: int) -> None:
    await conn.execute(PAY_DEBT, {"n": credits, "id": purchase_id})


async def owe(conn: AsyncConnection, purchase_id: uuid.UUID, *, owed: int, clawed: int) -> int:
    """Raise what the purchase owes to at least `owed`, count `clawed` as given back;
    returns what is still owed."""
    return int(await conn.scalar(OWE, {"owed": owed, "clawed": clawed, "id": purchase_id}) or 0)


async def lock_dispute(conn: AsyncConnection, dispute_id: str) -> dict[str, object] | None:
    row = (await conn.execute(DISPUTE, {"id": dispute_id})).mappings().first()
    return dict(row) if row else None


async def open_dispute(
    conn: AsyncConnection, dispute_id: str, purchase_id: uuid.UUID, user_id: str
) -> bool:
    """Record a new dispute; False if it was known already."""
    created = await conn.scalar(OPEN_DISPUTE, {"id": dispute_id, "purchase": purchase_id,
                                               "u": user_id})
    return created is not None


async def add_frozen(conn: AsyncConnection, dispute_id: str, credits: int) -> None:
    await conn.execute(ADD_FROZEN, {"n": credits, "id": dispute_id})


async def close_dispute(conn: AsyncConnection, dispute_id: str, status: str) -> None:
    await conn.execute(CLOSE_DISPUTE, {"status": status, "id": dispute_id})
