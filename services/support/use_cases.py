"""The support console's reads, one unit of work each.

Each reads in one REPEATABLE READ snapshot, so a page is one moment of the ledger:
the explanation's newest running balance and the balance it is shown with agree
even while the customer is spending. The SQL is in the `*_queries` modules.
"""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.db import UnitOfWork
from services.errors import NotFound, ValidationFailed
from services.support import batch_queries, customer_queries, explanation_queries, search_queries
from services.support.running_balance import Step, balances_after

MAX_QUERY = 255
MAX_MATCHES = 50
LIST_LIMIT = 100
# Transactions read above a later page: enough to carry its running balance over any
# one command's writes (a partial capture writes two).
CARRY = 8


async def _snapshot(conn: AsyncConnection) -> None:
    """Every read of this connection sees the same committed state."""
    await conn.execution_options(isolation_level="REPEATABLE READ")


def _balance(account: dict[str, Any] | None) -> dict[str, int]:
    available, held = (account["available"], account["held"]) if account else (0, 0)
    return {"available": available, "held": held, "total": available + held}


async def find_customers(uow: UnitOfWork, q: str) -> list[dict[str, Any]]:
    """Every user `q` names exactly, and by what; PAY007 for an empty or too long query."""
    q = q.strip()
    if not q or len(q) > MAX_QUERY:
        raise ValidationFailed(f"q must be 1 to {MAX_QUERY} characters", length=len(q))
    if not q.isprintable():  # no key has control characters, and Postgres text takes no NUL
        raise ValidationFailed("q must not contain control characters")
    async with uow.read() as conn:
        return await search_queries.find_matches(conn, q, MAX_MATCHES)


async def load_customer(uow: UnitOfWork, user_id: str) -> dict[str, Any]:
    """The customer page; PAY008 when the service knows nothing of this user."""
    async with uow.read() as conn:
        await _snapshot(conn)
        account = await customer_queries.account(conn, user_id)
        page: dict[str, Any] = {
            "user_id": user_id,
            "balance": _balance(account),
            "batches": await customer_queries.open_batches(conn, account["id"]) if account else [],
            "holds": await customer_queries.open_holds(conn, account["id"]) if account else [],
            "membership": await customer_queries.membership(conn, user_id),
            "purchases": await customer_queries.purchases(conn, user_id, LIST_LIMIT),
            "promo_redemptions": await customer_queries.promo_redemptions(conn, user_id, LIST_LIMIT),
            "fraud_flags": await customer_queries.fraud_flags(conn, user_id, LIST_LIMIT),
            "notifications": await customer_queries.notifications(conn, user_id, LIST_LIMIT),
            "stripe_customer_id": await customer_queries.stripe_customer_id(conn, user_id),
            "email": await customer_queries.newest_email(conn, user_id),
        }
    known = account is not None or page["stripe_customer_id"] or page["email"] or any(
        page[k] for k in ("membership", "purchases", "promo_redemptions", "fraud_flags",
                          "notifications"))
    if not known:
        raise NotFound("no such customer", userId=user_id)
    return page


def _step(row: dict[str, Any]) -> Step:
    stored = None
    if row["available_after"] is not None:
        stored = (row["available_after"], row["held_after"] or 0)
    return Step(stored, (row["available_change"], row["held_change"]))


async def explain_balance(
    uow: UnitOfWork, user_id: str, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    """The user's transactions newest first, each with its postings, its allocations and
    the balances after it, and the balance now; PAY008 for a user without an account."""
    async with uow.read() as conn:
        await _snapshot(conn)
        account = await customer_queries.account(conn, user_id)
        if account is None:
            raise NotFound("no such customer account", userId=user_id)
        rows, next_cursor = await explanation_queries.transactions(
            conn, user_id, account["id"], limit=limit, cursor=cursor)
        above = (await explanation_queries.newer_neighbours(
            conn, user_id, account["id"], cursor, CARRY) if cursor else [])
        ids = [r["id"] for r in rows]
        postings = await explanation_queries.postings_of(conn, ids)
        allocations = await explanation_queries.allocations_of(conn, ids)
    balance = _balance(account)
    afters = balances_after([_step(r) for r in above + rows],
                            None if cursor else (balance["available"], balance["held"]),
                            skip=len(above))
    entries = []
    for row, (available_after, held_after) in zip(rows, afters, strict=True):
        entry = {k: v for k, v in row.items() if k not in ("seq", "available_after", "held_after")}
        entries.append(entry | {
            "balance_after": available_after,
            "held_after": held_after,
            "postings": postings[row["id"]],
            "allocations": allocations[row["id"]],
        })
    return {"entries": entries, "next_cursor": next_cursor, "has_more": next_cursor is not None,
            "balance": balance}


async def load_batch(uow: UnitOfWork, batch_id: uuid.UUID) -> dict[str, Any]:
    """A batch and every movement against it; PAY008 when there is no such batch."""
    async with uow.read() as conn:
        await _snapshot(conn)
        batch = await batch_queries.batch(conn, batch_id)
        if batch is None:
            raise NotFound("no such batch", batchId=str(batch_id))
        moved = await batch_queries.movements(conn, batch_id, batch["transaction_id"])
        elsewhere = await batch_queries.returned_elsewhere(conn, batch_id)
    return {"batch": batch, "movements": moved, "returned_elsewhere": elsewhere}
