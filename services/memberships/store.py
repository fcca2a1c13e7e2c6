"""Queries of the membership handlers (the worker side); the rest of memberships' SQL
lives in `plan_store` (plans) and `subscription_store` (starting and reading them)."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.errors import NotFound

LOCK = text(
    """
    SELECT m.id, m.user_id, m.plan_id, m.status, m.stripe_subscription_id, m.email,
           m.current_period_start, m.current_period_end, m.cancel_at_period_end,
           m.stripe_state_at, m.failed_attempts,
           -- a trial is the claim's (0 for a membership that claimed none)
           coalesce((SELECT t.trial_days FROM membership_trials t WHERE t.membership_id = m.id),
                    0) AS trial_days
      FROM memberships m
     WHERE m.stripe_subscription_id = :sub OR m.id = CAST(:mid AS uuid)
     ORDER BY (m.stripe_subscription_id = :sub) DESC NULLS LAST
     LIMIT 1
       FOR UPDATE
    """
)
LINK = text("UPDATE memberships SET stripe_subscription_id = :sub WHERE id = :id")
PERIOD = text("SELECT * FROM membership_periods WHERE invoice_id = :inv")
PERIOD_AT = text(
    "SELECT * FROM membership_periods WHERE membership_id = :m AND period_start = :start"
)
PREVIOUS = text(
    "SELECT * FROM membership_periods WHERE membership_id = :m AND period_start < :start "
    "ORDER BY period_start DESC LIMIT 1"
)
# The batches a renewal may roll over: the grant and rollover batches of the periods that
# start before the renewal's own. An invoice applied late (a dunning retry collected after
# the next period's, or webhooks out of order) must not expire a later period's credits.
OPEN_BATCHES = text(
    """
    SELECT b.id, b.remaining, b.expires_at, b.source, b.transaction_id
      FROM credit_batches b
     WHERE b.status = 'open' AND b.remaining > 0
       AND b.transaction_id IN (
           SELECT grant_transaction_id FROM membership_periods
            WHERE membership_id = :m AND period_start < :start
           UNION SELECT rollover_transaction_id FROM membership_periods
            WHERE membership_id = :m AND period_start < :start)
     ORDER BY b.expires_at, b.acquired_at, b.id
       FOR UPDATE
    """
)
INSERT_PERIOD = text(
    """
    INSERT INTO membership_periods (invoice_id, membership_id, plan_id, period_start, period_end,
        credits, amount_minor, currency, grant_transaction_id, rollover_transaction_id,
        expiry_transaction_id, carried_credits, expired_credits)
    VALUES (:invoice, :membership, :plan, :start, :end, :credits, :amount, :currency, :grant_tx,
            :rollover_tx, :expiry_tx, :carried, :expired)
    """
)
MARK_PAID = text(
    """
    UPDATE memberships
       SET status = CASE WHEN status IN ('canceled', 'incomplete_expired') THEN status
                         ELSE :status END,
           plan_id = :plan,
           current_period_start = CASE WHEN current_period_end IS NULL OR :end >= current_period_end
                                       THEN :start ELSE current_period_start END,
           current_period_end = greatest(coalesce(current_period_end, :end), :end),
           failed_attempts = 0, updated_at = now()
     WHERE id = :id
    """
)
MARK_FAILED = text(
    "UPDATE memberships SET status = :status, failed_attempts = greatest(failed_attempts, :n), "
    "updated_at = now() WHERE id = :id"
)
APPLY_STATE = text(
    """
    UPDATE memberships
       SET status = :status, plan_id = :plan,
           current_period_start = coalesce(:start, current_period_start),
           current_period_end = coalesce(:end, current_period_end),
           cancel_at_period_end = :cape, canceled_at = coalesce(:canceled, canceled_at),
           stripe_state_at = :at, updated_at = now()
     WHERE id = :id
    """
)


async def lock_membership(
    conn: AsyncConnection, user_id: str, subscription_id: str, membership_id: uuid.UUID | None
) -> dict[str, Any]:
    """The user's membership of this subscription, locked; links the subscription id
    when Stripe's event beat the ingress's own write of it."""
    row = (
        await conn.execute(LOCK, {"sub": subscription_id, "mid": membership_id})
    ).mappings().first()
    if row is None or row["user_id"] != user_id:
        raise NotFound("no membership for this subscription", subscriptionId=subscription_id)
    found = dict(row)
    if found["stripe_subscription_id"] is None:
        await conn.execute(LINK, {"sub": subscription_id, "id": found["id"]})
        found["stripe_subscription_id"] = subscription_id
    return found


async def period_of_invoice(conn: AsyncConnection, invoice_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(PERIOD, {"inv": invoice_id})).mappings().first()
    return dict(row) if row else None


async def period_starting(
    conn: AsyncConnection, membership_id: uuid.UUID, start: datetime
) -> dict[str, Any] | None:
    row = (await conn.execute(PERIOD_AT, {"m": membership_id, "start": start})).mappings().first()
    return dict(row) if row else None


async def previous_period(
    conn: AsyncConnection, membership_id: uuid.UUID, start: datetime
) -> dict[str, Any] | None:
    row = (await conn.execute(PREVIOUS, {"m": membership_id, "start": start})).mappings().first()
    return dict(row) if row else None


async def open_membership_batches(
    conn: AsyncConnection, membership_id: uuid.UUID, before: datetime
) -> list[Any]:
    """Open batches of the membership's periods that start before `before`, locked."""
    return list(await conn.execute(OPEN_BATCHES, {"m": membership_id, "start": before}))


async def insert_period(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(INSERT_PERIOD, values)


async def mark_paid(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(MARK_PAID, values)


async def mark_failed(conn: AsyncConnection, membership_id: uuid.UUID, status: str, attempt: int) -> None:
    await conn.execute(MARK_FAILED, {"id": membership_id, "status": status, "n": attempt})


async def apply_state(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(APPLY_STATE, values)
