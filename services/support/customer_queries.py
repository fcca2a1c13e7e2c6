"""The customer page's reads: balance, open batches and holds, membership, purchases
(with their refunds and disputes), promo redemptions, fraud flags and emails sent."""

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

LIVE = ("incomplete", "trialing", "active", "past_due")

ACCOUNT = text("SELECT id, available, held FROM accounts WHERE user_id = :u")
OPEN_BATCHES = text(
    """
    SELECT id, source, amount, remaining, acquired_at, expires_at, transaction_id, purchase_id
      FROM credit_batches
     WHERE account_id = :account AND status = 'open' AND remaining > 0
     ORDER BY expires_at, acquired_at, id
    """
)
OPEN_HOLDS = text(
    """
    SELECT id, kind, reference, credits, created_at, expires_at, transaction_id
      FROM holds WHERE account_id = :account AND status = 'open'
     ORDER BY created_at, id
    """
)
MEMBERSHIP = text(
    """
    SELECT m.id AS membership_id, m.plan_id, p.name AS plan_name, m.status,
           m.stripe_subscription_id AS subscription_id, m.stripe_customer_id,
           m.current_period_start, m.current_period_end, m.cancel_at_period_end, m.canceled_at,
           p.credits_per_period, p.rollover, m.trial_days, m.created_at,
           coalesce((SELECT mp.credits FROM membership_periods mp WHERE mp.membership_id = m.id
                      ORDER BY mp.period_start DESC LIMIT 1), 0) AS credits_this_period
      FROM memberships m JOIN membership_plans p ON p.id = m.plan_id
     WHERE m.user_id = :u
     ORDER BY (m.status = ANY(CAST(:live AS text[]))) DESC, m.created_at DESC
     LIMIT 1
    """
)
PURCHASES = text(
    """
    SELECT p.id AS purchase_id, p.pack_id, k.name AS pack_name, p.credits, p.bonus_credits,
           p.promo_bonus_credits, p.amount_minor AS amount, p.currency,
           p.list_amount_minor AS list_amount, p.discount_minor AS discount, p.promo_code,
           p.status, p.payment_intent_id, p.checkout_session_id, p.failure_code,
           p.grant_transaction_id, p.refunded_minor AS refunded_amount, p.owed_credits,
           p.clawed_credits, p.shortfall_credits, p.created_at
      FROM purchases p JOIN credit_packs k ON k.id = p.pack_id
     WHERE p.user_id = :u
     ORDER BY p.created_at DESC, p.id DESC
     LIMIT :limit
    """
)
REFUNDS = text(
    """
    SELECT purchase_id, amount_minor AS amount, currency, created_at FROM purchase_refunds
     WHERE purchase_id = ANY(CAST(:ids AS uuid[]))
     ORDER BY created_at, id
    """
)
DISPUTES = text(
    """
    SELECT purchase_id, dispute_id, status, frozen_credits, opened_at, closed_at
      FROM purchase_disputes WHERE purchase_id = ANY(CAST(:ids AS uuid[]))
     ORDER BY opened_at, dispute_id
    """
)
PROMO_REDEMPTIONS = text(
    """
    SELECT r.id, c.code, c.kind, r.status, r.target_kind, r.target_id,
           r.discount_minor AS discount, r.currency, r.bonus_credits, r.trial_days,
           r.purchase_id, r.membership_id, r.created_at, r.redeemed_at, r.released_at,
           r.release_reason
      FROM promo_reservations r JOIN promo_codes c ON c.id = r.promo_code_id
     WHERE r.user_id = :u
     ORDER BY r.created_at DESC, r.id DESC
     LIMIT :limit
    """
)
FRAUD_FLAGS = text(
    """
    SELECT id, user_id, rule, subject, severity, status, details, frozen_credits, created_at,
           resolved_at, resolved_by, resolution_note
      FROM fraud_flags WHERE user_id = :u
     ORDER BY created_at DESC, id DESC
     LIMIT :limit
    """
)
NOTIFICATIONS = text(
    """
    SELECT event_id, template, status, recipient, attempts, created_at, sent_at
      FROM sent_notifications WHERE user_id = :u
     ORDER BY created_at DESC, event_id DESC, template
     LIMIT :limit
    """
)
STRIPE_CUSTOMER = text("SELECT customer_id, email FROM stripe_customers WHERE user_id = :u")
# The newest address the service was given, wherever it keeps one.
EMAIL = text(
    """
    SELECT email FROM (
        SELECT email, created_at FROM stripe_customers WHERE user_id = :u AND email IS NOT NULL
        UNION ALL
        SELECT email, created_at FROM purchases WHERE user_id = :u AND email IS NOT NULL
        UNION ALL
        SELECT email, created_at FROM memberships WHERE user_id = :u AND email IS NOT NULL
        UNION ALL
        SELECT recipient, created_at FROM sent_notifications
         WHERE user_id = :u AND recipient IS NOT NULL
    ) known
     ORDER BY created_at DESC LIMIT 1
    """
)


def _currency(row: dict[str, Any]) -> dict[str, Any]:
    """char(3) columns come back padded when short; currencies are three letters anyway."""
    if row.get("currency"):
        row["currency"] = row["currency"].strip()
    return row


async def account(conn: AsyncConnection, user_id: str) -> dict[str, Any] | None:
    """The user's account row (id, available, held), None when they have none."""
    row = (await conn.execute(ACCOUNT, {"u": user_id})).mappings().first()
    return dict(row) if row else None


async def open_batches(conn: AsyncConnection, account_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(OPEN_BATCHES, {"account": account_id})
    return [dict(r) for r in rows.mappings()]


async def open_holds(conn: AsyncConnection, account_id: int) -> list[dict[str, Any]]:
    rows = await conn.execute(OPEN_HOLDS, {"account": account_id})
    return [dict(r) for r in rows.mappings()]


async def membership(conn: AsyncConnection, user_id: str) -> dict[str, Any] | None:
    """The live membership, else the latest one."""
    row = (await conn.execute(MEMBERSHIP, {"u": user_id, "live": list(LIVE)})).mappings().first()
    return dict(row) if row else None


async def purchases(conn: AsyncConnection, user_id: str, limit: int) -> list[dict[str, Any]]:
    """Newest first, each with its refunds and disputes (oldest first)."""
    found = [_currency(dict(r)) for r in (await conn.execute(
        PURCHASES, {"u": user_id, "limit": limit})).mappings()]
    ids = [p["purchase_id"] for p in found]
    refunds: dict[Any, list[dict[str, Any]]] = {i: [] for i in ids}
    disputes: dict[Any, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        for r in (await conn.execute(REFUNDS, {"ids": ids})).mappings():
            refunds[r["purchase_id"]].append(
                _currency({k: v for k, v in r.items() if k != "purchase_id"}))
        for d in (await conn.execute(DISPUTES, {"ids": ids})).mappings():
            disputes[d["purchase_id"]].append({k: v for k, v in d.items() if k != "purchase_id"})
    return [p | {"refunds": refunds[p["purchase_id"]], "disputes": disputes[p["purchase_id"]]}
            for p in found]


async def promo_redemptions(conn: AsyncConnection, user_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(PROMO_REDEMPTIONS, {"u": user_id, "limit": limit})
    return [_currency(dict(r)) for r in rows.mappings()]


async def fraud_flags(conn: AsyncConnection, user_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(FRAUD_FLAGS, {"u": user_id, "limit": limit})
    return [dict(r) for r in rows.mappings()]


async def notifications(conn: AsyncConnection, user_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await conn.execute(NOTIFICATIONS, {"u": user_id, "limit": limit})
    return [dict(r) for r in rows.mappings()]


async def stripe_customer_id(conn: AsyncConnection, user_id: str) -> str | None:
    row = (await conn.execute(STRIPE_CUSTOMER, {"u": user_id})).first()
    return row.customer_id if row else None


async def newest_email(conn: AsyncConnection, user_id: str) -> str | None:
    found: str | None = (await conn.execute(EMAIL, {"u": user_id})).scalar()
    return found
