"""Reports' use cases: each one report in one transaction.

A transaction although they only read: the queries set the time zone with `SET LOCAL`
(UTC buckets), which lasts only inside one. The SQL stays in `services.reports.queries`.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.db import UnitOfWork
from services.reports import queries
from services.reports.queries import Range

Build = Callable[[AsyncConnection], Awaitable[dict[str, Any]]]


async def _report(uow: UnitOfWork, build: Build) -> dict[str, Any]:
    async with uow.begin() as conn:
        return await build(conn)


async def build_revenue_report(uow: UnitOfWork, period: Range, currency: str) -> dict[str, Any]:
    """Gross (packs + memberships), refunds and net money per bucket, in minor units."""
    return await _report(uow, lambda conn: queries.revenue(conn, period, currency))


async def build_credits_report(uow: UnitOfWork, period: Range) -> dict[str, Any]:
    """Credits issued, consumed, expired, clawed back, and the liability per bucket."""
    return await _report(uow, lambda conn: queries.credits(conn, period))


async def build_packs_report(uow: UnitOfWork, period: Range, currency: str) -> dict[str, Any]:
    """Paid purchases and revenue per pack, best-selling first."""
    return await _report(uow, lambda conn: queries.packs(conn, period, currency))


async def build_churn_report(uow: UnitOfWork, period: Range) -> dict[str, Any]:
    """Per plan and bucket: members at the start, new, canceled, churn rate."""
    return await _report(uow, lambda conn: queries.churn(conn, period))


async def build_promo_codes_report(uow: UnitOfWork, period: Range) -> dict[str, Any]:
    """Per code redeemed in the range: redemptions, discount, revenue, bonus credits."""
    return await _report(uow, lambda conn: queries.promo_codes(conn, period))
