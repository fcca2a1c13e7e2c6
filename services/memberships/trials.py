"""One trial per user, and per card: claimed in Postgres before Stripe hears of it.

A trial used to be decided per membership, so subscribe -> trial credits -> cancel ->
subscribe again gave a new trial every time. A subscribe that offers a trial (the plan's
`trialDays`, or a free_trial code's) now first inserts a `membership_trials` row, unique
on the user and on the card's fingerprint (when a payment method is given); only if the
insert wins does Stripe get `trial_period_days`, and only a membership holding a claim
gets trial credits from the worker.

Without a claim:
- a plan's own trial is for first-time members: the subscription simply starts paid
  (the customer asked for the plan, not for the trial);
- a free_trial code is refused, PAY003 `trial_used` (the code gives nothing else).

The claim is taken in the same transaction as the MAX_CREDIT_BALANCE check of the first
grant (the trial's credits, or the period's), so a refused subscribe holds no claim;
Stripe refusing the subscription gives it back (`give_back`).
"""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.errors import CreditLimitExceeded
from services.ledger import queries
from services.memberships.subscription_store import CLAIM, GIVE_BACK, SET_DAYS
from services.promos.rules import refuse
from services.settings import Settings


async def claim(
    conn: AsyncConnection,
    settings: Settings,
    plan: dict[str, Any],
    *,
    user_id: str,
    membership_id: uuid.UUID,
    offered_days: int,
    card_fingerprint: str | None,
    by_code: bool,
) -> int:
    """The trial days to ask Stripe for (0: the subscription starts paid). Call inside the
    transaction that ends just before Stripe is called; an exception rolls the claim back.

    Also refuses (PAY006) a first grant that would take the balance past
    MAX_CREDIT_BALANCE: the trial's credits if a trial is claimed, else the period's.
    """
    days = 0
    if offered_days > 0:
        claimed = await conn.scalar(CLAIM, {
            "m": membership_id, "u": user_id, "card": card_fingerprint, "days": offered_days,
            "source": "promo" if by_code else "plan",
        })
        if claimed is not None:
            days = offered_days
        elif by_code:
            raise refuse("trial_used", "this account or this card has already had a free trial")
    credits = plan["trial_credits"] if days else plan["credits_per_period"]
    total = (await queries.balance(conn, user_id))["total"]
    if total + credits > settings.max_credit_balance:
        raise CreditLimitExceeded(
            f"the balance would be {total + credits}, above the limit of "
            f"{settings.max_credit_balance}",
            balance=total,
            credits=credits,
            limit=settings.max_credit_balance,
        )
    if days:
        await conn.execute(SET_DAYS, {"days": days, "m": membership_id})
    return days


async def give_back(conn: AsyncConnection, membership_id: uuid.UUID) -> None:
    """The subscription was refused: its trial was never used."""
    await conn.execute(GIVE_BACK, {"m": membership_id})
