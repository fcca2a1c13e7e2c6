"""The SQL of membership plans: the catalogue's rows and their Stripe ids.

`services.memberships.plans` owns the rules and the views.
"""

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue_store import update_row

COLUMNS = (
    "id, name, price_minor, currency, interval, interval_count, credits_per_period, rollover, "
    "trial_days, trial_credits, active, stripe_product_id, stripe_plan_id, stripe_plan_terms"
)
EDITABLE = frozenset({
    "name", "price", "currency", "interval", "interval_count", "credits_per_period",
    "rollover", "trial_days", "trial_credits", "active",
})
PLAN_IDS = text("SELECT id FROM membership_plans ORDER BY id")


async def plan_rows(conn: AsyncConnection, include_archived: bool = False) -> list[Any]:
    """Plans cheapest first (archived ones only when asked)."""
    where = "" if include_archived else "WHERE active"
    rows = await conn.execute(
        text(f"SELECT {COLUMNS} FROM membership_plans {where} ORDER BY price_minor, id")
    )
    return list(rows.mappings())


async def plan_row(conn: AsyncConnection, plan_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            text(f"SELECT {COLUMNS} FROM membership_plans WHERE id = :id"), {"id": plan_id}
        )
    ).mappings().first()
    return dict(row) if row else None


async def plan_by_stripe_id(conn: AsyncConnection, stripe_plan_id: str | None) -> str | None:
    if not stripe_plan_id:
        return None
    found: str | None = await conn.scalar(
        text("SELECT id FROM membership_plans WHERE stripe_plan_id = :s"), {"s": stripe_plan_id}
    )
    return found


async def insert_plan(conn: AsyncConnection, plan: dict[str, Any]) -> Any | None:
    """The new row, or None when a plan with this id exists."""
    return (
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


async def update_plan_row(conn: AsyncConnection, plan_id: str, changes: dict[str, Any]) -> Any | None:
    """The row after the EDITABLE `changes`, or None when there is no such plan."""
    return await update_row(conn, "membership_plans", plan_id, changes, editable=set(EDITABLE),
                            columns=COLUMNS)


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
