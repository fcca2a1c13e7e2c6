"""Membership plans: what a subscription costs and grants each period. Admins change them.

A plan is archived, never deleted: memberships and their periods refer to it. Changing
a plan's credits or rollover applies from the next grant of every membership on it;
changing its price or interval makes a new Stripe plan at the next sync, and running
subscriptions keep the Stripe plan they were created with (as Stripe does).
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.errors import InvalidState, NotFound
from services.memberships.plan_store import EDITABLE, insert_plan, plan_row, plan_rows, update_plan_row


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
    return [plan_view(r) for r in await plan_rows(conn, include_archived)]


async def get_plan(conn: AsyncConnection, plan_id: str, *, active_only: bool = True) -> dict[str, Any]:
    row = await plan_row(conn, plan_id)
    if row is None or (active_only and not row["active"]):
        raise NotFound("no such membership plan", planId=plan_id)
    return plan_view(row)


async def create_plan(conn: AsyncConnection, plan: dict[str, Any]) -> dict[str, Any]:
    created = await insert_plan(conn, plan)
    if created is None:
        raise InvalidState("a membership plan with this id exists", planId=plan["id"])
    return plan_view(created)


async def update_plan(conn: AsyncConnection, plan_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    if not EDITABLE & changes.keys():
        return await get_plan(conn, plan_id, active_only=False)
    row = await update_plan_row(conn, plan_id, changes)
    if row is None:
        raise NotFound("no such membership plan", planId=plan_id)
    return plan_view(row)
