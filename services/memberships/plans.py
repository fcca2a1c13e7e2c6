"""Membership plans: what a subscription costs and grants each period. Admins change them.

A plan is archived, never deleted: memberships and their periods refer to it. Changing
a plan's credits or rollover applies from the next grant of every membership on it;
changing its price or interval makes a new Stripe plan at the next sync, and running
subscriptions keep the Stripe plan they were created with (as Stripe does).
"""

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue_store import update_row
from services.errors import InvalidState, NotFound

COLUMNS = (
    "id, name, price_minor, currency, interval, interval_count, credits_per_period, rollover, "
    "trial_days, trial_credits, active, stripe_product_id, stripe_plan_id, stripe_plan_terms"
)
EDITABLE = {
    "name", "price", "currency", "interval", "interval_count", "credits_per_period",
    "rollover", "trial_days", "trial_credits", "active",
}


def plan_view(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "price": row["price_minor"],
        "currency": row["currency"].strip(),
        "interval": row["interval"],
        "interval_count": row["interval_count"],
        "credits_per_period": row["credits_per_period"],
        "rollover": row["rollover"],
        "trial_days": row["trial_days"],
        "trial_credits": row["trial_credits"],
        "active": row["active"],
    }


def stripe_terms(plan: dict[str, Any]) -> str:
    """What a Stripe plan is made for; Stripe plans never change their price."""
    return f"{plan['price']}:{plan['currency']}:{plan['interval']}:{plan['interval_count']}"


async def list_plans(conn: AsyncConnection, include_archived: bool = False) -> list[dict[str, Any]]:
    where = "" if include_archived else "WHERE active"
    rows = await conn.execute(
        text(f"SELECT {COLUMNS} FROM membership_plans {where} ORDER BY price_minor, id")
    )
    return [plan_view(r) for r in rows.mappings()]


async def plan_row(conn: AsyncConnection, plan_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            text(f"SELECT {COLUMNS} FROM membership_plans WHERE id = :id"), {"id": plan_id}
        )
    ).mappings().first()
    return dict(row) if row else None


async def get_plan(conn: AsyncConnection, plan_id: str, *, active_only: bool = True) -> dict[str, Any]:
    row = await plan_row(conn, plan_id)
    if row is None or (active_only and not row["active"]):
        raise NotFound("no such membership plan", planId=plan_id)
    return plan_view(row)


async def plan_by_stripe_id(conn: AsyncConnection, stripe_plan_id: str | None) -> str | None:
    if not stripe_plan_id:
        return None
    found: str | None = await conn.scalar(
        text("SELECT id FROM membership_plans WHERE stripe_plan_id = :s"), {"s": stripe_plan_id}
    )
    return found


async def create_plan(conn: AsyncConnection, plan: dict[str, Any]) -> dict[str, Any]:
    created = (
        await conn.execute(
            text(
                f"""
                INSERT INTO membership_plans (id, name, price_minor, currency, interval,
                    interval_count, credits_per_period, rollover, trial_days, trial_credits)
                VALUES (:id, :name, :price, :currency, :interval, :interval_count,
                        :credits_per_period, :rollover, :trial_days, :trial_credits)
                ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}
                """
            ),
            plan,
        )
    ).mappings().first()
    if created is None:
        raise InvalidState("a membership plan with this id exists", planId=plan["id"])
    return plan_view(created)


async def update_plan(conn: AsyncConnection, plan_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    if not EDITABLE & changes.keys():
        return await get_plan(conn, plan_id, active_only=False)
    row = await update_row(conn, "membership_plans", plan_id, changes, editable=EDITABLE,
                           columns=COLUMNS)
    if row is None:
        raise NotFound("no such membership plan", planId=plan_id)
    return plan_view(row)


async def save_stripe_ids(
    conn: AsyncConnection, plan_id: str, product_id: str, stripe_plan_id: str, terms: str
) -> None:
    await conn.execute(
        text(
            "UPDATE membership_plans SET stripe_product_id = :p, stripe_plan_id = :s, "
            "stripe_plan_terms = :t, updated_at = now() WHERE id = :id"
        ),
        {"p": product_id, "s": stripe_plan_id, "t": terms, "id": plan_id},
    )
