"""Membership plans' and memberships' synchronous use cases: one unit of work each.

The HTTP controllers call these instead of opening connections; the plan rules are
`services.memberships.plans`, the SQL `.plan_store` and `.store`. Subscribe and cancel talk to Stripe between
transactions and take the engine (`services.memberships.subscriptions`).
"""

from typing import Any

from services.db import UnitOfWork
from services.memberships import plans
from services.memberships.subscriptions import current_membership, membership_view


async def list_plans(uow: UnitOfWork) -> list[dict[str, Any]]:
    """Active plans, cheapest first."""
    async with uow.read() as conn:
        return await plans.list_plans(conn)


async def get_plan(uow: UnitOfWork, plan_id: str) -> dict[str, Any]:
    """An active plan; PAY008 when there is none."""
    async with uow.read() as conn:
        return await plans.get_plan(conn, plan_id)


async def create_plan(uow: UnitOfWork, fields: dict[str, Any]) -> dict[str, Any]:
    async with uow.begin() as conn:
        return await plans.create_plan(conn, fields)


async def change_plan(uow: UnitOfWork, plan_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Credits and rollover apply from each membership's next grant."""
    async with uow.begin() as conn:
        return await plans.update_plan(conn, plan_id, changes)


async def archive_plan(uow: UnitOfWork, plan_id: str) -> dict[str, Any]:
    """No new subscriptions; running ones go on (never deleted)."""
    return await change_plan(uow, plan_id, {"active": False})


async def show_membership(uow: UnitOfWork, user_id: str) -> dict[str, Any]:
    """The live membership, else the latest one (PAY008 when there never was one)."""
    async with uow.read() as conn:
        return membership_view(await current_membership(conn, user_id))
