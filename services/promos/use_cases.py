"""Promo codes' synchronous use cases: one unit of work each.

The HTTP controllers call these instead of opening connections; the rules are
`services.promos.codes` and `.reservations`, the SQL `.code_store`, `.reservation_store`
and `.stats_queries`.
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.db import UnitOfWork
from services.memberships.plans import get_plan
from services.promos import codes, reservations
from services.promos.rules import Preview, Target
from services.promos.stats import promo_stats
from services.purchases.credit_packs import get_pack


async def _target(conn: AsyncConnection, pack_id: str | None, plan_id: str | None) -> Target:
    if pack_id is not None:
        pack = await get_pack(conn, pack_id)
        return Target("pack", pack["id"], pack["price"], pack["currency"])
    assert plan_id is not None
    plan = await get_plan(conn, plan_id)
    return Target("plan", plan["id"], plan["price"], plan["currency"])


async def find_target(uow: UnitOfWork, *, pack_id: str | None, plan_id: str | None) -> Target:
    """What a code would discount: the active pack, else the active plan (PAY008 if none)."""
    async with uow.read() as conn:
        return await _target(conn, pack_id, plan_id)


async def preview_promo(
    uow: UnitOfWork, code: str, *, pack_id: str | None, plan_id: str | None, user_id: str,
    now: datetime,
) -> Preview:
    """The discount `code` would give; PAY003 with its reason if none. Reads only."""
    async with uow.read() as conn:
        target = await _target(conn, pack_id, plan_id)
        return await reservations.validate(conn, code, target, user_id, now)


async def reserve_promo(
    uow: UnitOfWork,
    code: str,
    target: Target,
    user_id: str,
    *,
    reservation_id: uuid.UUID,
    ttl: timedelta,
    now: datetime,
    source: str | None,
) -> tuple[dict[str, Any], Preview]:
    """Reserve one use of `code` for `user_id` until `now + ttl`."""
    async with uow.begin() as conn:
        return await reservations.reserve(conn, code, target, user_id, reservation_id=reservation_id,
                                          ttl=ttl, now=now, source=source)


async def create_promo_code(uow: UnitOfWork, fields: dict[str, Any]) -> dict[str, Any]:
    async with uow.begin() as conn:
        return await codes.create_code(conn, fields)


async def list_promo_codes(uow: UnitOfWork) -> list[dict[str, Any]]:
    """Newest first, with live uses and redemptions."""
    async with uow.read() as conn:
        return await codes.list_codes(conn)


async def change_promo_code(uow: UnitOfWork, code_id: uuid.UUID, changes: dict[str, Any]) -> dict[str, Any]:
    """Limits, dates, targets and the active flag."""
    async with uow.begin() as conn:
        return await codes.update_code(conn, code_id, changes)


async def promo_code_stats(uow: UnitOfWork, code_id: uuid.UUID) -> dict[str, Any]:
    async with uow.read() as conn:
        return await promo_stats(conn, code_id)
