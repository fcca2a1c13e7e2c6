"""Plans as Stripe Products with a (legacy) Stripe plan for their current terms.

Unlike packs, a subscription needs its Stripe plan, so `subscribe` makes one on
demand; `pika-payment stripe-sync` and `POST /payment/products/sync` do them all.
A changed price or interval makes a new Stripe plan (Stripe plans never change);
running subscriptions keep theirs until they change plan.
"""

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.memberships.plan_store import PLAN_IDS, plan_row, save_stripe_ids
from services.memberships.plans import plan_view, stripe_terms
from services.memberships.ports import SubscriptionProvider


async def _sync(engine: AsyncEngine, provider: SubscriptionProvider, row: dict[str, Any]) -> dict[str, Any]:
    plan = plan_view(row)
    terms = stripe_terms(plan)
    fresh = row["stripe_plan_id"] is None or row["stripe_plan_terms"] != terms
    product, stripe_plan = row["stripe_product_id"], row["stripe_plan_id"]
    if fresh or product is None:
        product, stripe_plan = await provider.save_plan(
            product_id=product,
            plan_id=plan["id"],
            name=plan["name"],
            active=plan["active"],
            amount=plan["price"],
            currency=plan["currency"],
            interval=plan["interval"],
            interval_count=plan["interval_count"],
            terms=terms,
        )
        async with engine.begin() as conn:
            await save_stripe_ids(conn, plan["id"], product, stripe_plan, terms)
    return {"plan_id": plan["id"], "product_id": product, "stripe_plan_id": stripe_plan,
            "new_plan": fresh}


async def ensure_stripe_plan(engine: AsyncEngine, provider: SubscriptionProvider, plan_id: str) -> str:
    """The Stripe plan id for the plan's current terms, made if missing."""
    async with engine.connect() as conn:
        row = await plan_row(conn, plan_id)
    assert row is not None, "callers check the plan exists"
    return str((await _sync(engine, provider, row))["stripe_plan_id"])


async def sync_plans(
    engine: AsyncEngine,
    provider: SubscriptionProvider,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """One line per plan; `progress(done, total)` after each (a few Stripe calls each)."""
    async with engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(PLAN_IDS)]
    report = []
    for done, plan_id in enumerate(ids, start=1):
        async with engine.connect() as conn:
            row = await plan_row(conn, plan_id)
        if row is not None:
            report.append(await _sync(engine, provider, row))
        if progress:
            progress(done, len(ids))
    return report
