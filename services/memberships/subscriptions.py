"""Subscribing, changing plan and cancelling: the ingress side of memberships.

The membership row is written *before* Stripe is called, in the `incomplete` state
that the database allows once per user (`memberships_one_live`): two concurrent
subscribe calls cannot both reach Stripe, and Stripe's first webhook always finds the
row (the subscription carries `membershipId`). A trial is claimed (once per user and
per card, see `trials`) before Stripe is asked for one. No credits move here; the
worker grants them from Stripe's signed invoice events. State that Stripe answers with (status,
period, cancellation, plan) reaches the membership through a `membership.sync`
command, the same path its webhooks take, so the worker is the only writer of it.
"""

import time
import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.commands import SubscriptionStatePayload, SyncMembership
from services.errors import (
    DependencyUnavailable,
    InvalidState,
    NotFound,
    PaymentError,
    SubscriptionAlreadyActive,
)
from services.memberships import trials
from services.memberships.plan_sync import ensure_stripe_plan
from services.memberships.plans import get_plan
from services.memberships.ports import SubscriptionProvider, SubscriptionState
from services.memberships.subscription_store import (
    ABANDON,
    BY_ID,
    CREATE,
    CURRENT,
    LINK,
    SET_RESERVATION,
)
from services.promos import reservations
from services.promos.checkout import promo_terms, undo_promo
from services.promos.rules import Target
from services.purchases.customers import ensure_customer
from services.settings import Settings

LIVE = ("incomplete", "trialing", "active", "past_due")


def membership_view(row: Any, state: SubscriptionState | None = None) -> dict[str, Any]:
    """The membership as stored, with Stripe's fresher answer laid over it if given."""
    view = {
        "membership_id": row["id"],
        "user_id": row["user_id"],
        "plan_id": row["plan_id"],
        "plan_name": row["plan_name"],
        "status": row["status"],
        "subscription_id": row["stripe_subscription_id"],
        "current_period_start": row["current_period_start"],
        "current_period_end": row["current_period_end"],
        "cancel_at_period_end": row["cancel_at_period_end"],
        "canceled_at": row["canceled_at"],
        "credits_this_period": row["credits_this_period"],
    }
    if state is not None:
        view |= {
            "status": state.status,
            "subscription_id": state.id,
            "current_period_start": state.current_period_start or view["current_period_start"],
            "current_period_end": state.current_period_end or view["current_period_end"],
            "cancel_at_period_end": state.cancel_at_period_end,
            "canceled_at": state.canceled_at or state.ended_at or view["canceled_at"],
            "client_secret": state.client_secret,
        }
    return view


def sync_command(
    user_id: str,
    membership_id: uuid.UUID | None,
    state: SubscriptionState,
    command_id: uuid.UUID,
    *,
    observed_at: int | None = None,
    stripe_event_id: str | None = None,
    source: str = "pika-payment-ingress",
) -> SyncMembership:
    """Stripe's state of a subscription as the worker applies it, from a webhook
    (`observed_at` = the event's `created`) or from Stripe's answer to one of our calls
    (observed now)."""
    return SyncMembership(
        id=command_id,
        user_id=user_id,
        source=source,
        payload=SubscriptionStatePayload(
            subscription_id=state.id,
            membership_id=membership_id,
            stripe_event_id=stripe_event_id or f"api:{command_id}",
            status=state.status,
            stripe_plan_id=state.stripe_plan_id,
            current_period_start=state.current_period_start,
            current_period_end=state.current_period_end,
            cancel_at_period_end=state.cancel_at_period_end,
            canceled_at=state.canceled_at or (state.ended_at if state.status == "canceled" else None),
            ended_at=state.ended_at,
            stripe_created=int(time.time()) if observed_at is None else observed_at,
        ),
    )


async def current_membership(conn: AsyncConnection, user_id: str) -> dict[str, Any]:
    row = (await conn.execute(CURRENT, {"u": user_id, "live": list(LIVE)})).mappings().first()
    if row is None:
        raise NotFound("no membership", userId=user_id)
    return dict(row)


async def _live(conn: AsyncConnection, user_id: str) -> dict[str, Any] | None:
    try:
        found = await current_membership(conn, user_id)
    except NotFound:
        return None
    return found if found["status"] in LIVE else None


async def subscribe(
    engine: AsyncEngine,
    provider: SubscriptionProvider,
    settings: Settings,
    *,
    user_id: str,
    plan_id: str,
    membership_id: uuid.UUID,
    email: str | None,
    payment_method: str | None,
    change: bool,
    promo_code: str | None = None,
    redemption_id: uuid.UUID | None = None,
    source: str | None = None,
) -> tuple[dict[str, Any], SyncMembership | None]:
    """Start (or, with `change`, switch) the user's membership; a free_trial code gives its
    trial days (redeemed at once: Stripe starts the trial when it creates the subscription).
    A trial (the plan's or the code's) is claimed first, once per user and per card: a
    returning member's subscription starts paid, and their free_trial code is refused.

    Returns the view for the caller and the sync command to publish. A repeated
    `membership_id` (the same Idempotency-Key) answers with the first subscription.
    """
    async with engine.connect() as conn:
        plan = await get_plan(conn, plan_id)
        again = (await conn.execute(BY_ID, {"id": membership_id})).mappings().first()
        live = await _live(conn, user_id)
    if again is not None and again["stripe_subscription_id"]:
        state = await provider.retrieve_subscription(again["stripe_subscription_id"])
        return membership_view(again, state), None
    if live is not None:
        if change:
            return await _change(engine, provider, live, plan, membership_id)
        if live["status"] == "incomplete" and live["plan_id"] == plan_id and live["stripe_subscription_id"]:
            # The first payment still needs the customer: hand back its client secret.
            state = await provider.retrieve_subscription(live["stripe_subscription_id"])
            return membership_view(live, state), None
        raise SubscriptionAlreadyActive(
            f"a membership is already {live['status']}",
            membershipId=str(live["id"]),
            planId=live["plan_id"],
            status=live["status"],
        )
    stripe_plan = await ensure_stripe_plan(engine, provider, plan_id)
    customer = await ensure_customer(engine, provider, user_id, email)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                CREATE,
                {"id": membership_id, "u": user_id, "plan": plan_id, "customer": customer,
                 "email": email, "trial": 0},  # the claim, below, sets the trial's days
            )
    except IntegrityError as error:
        raise SubscriptionAlreadyActive("a membership is already being started") from error
    promo = None
    try:
        promo = await promo_terms(
            engine, settings, Target("plan", plan_id, plan["price"], plan["currency"]), user_id,
            owner_id=membership_id, promo_code=promo_code, redemption_id=redemption_id,
            source=source,
        )
        card = None
        if payment_method:
            card = await provider.attach_payment_method(customer_id=customer,
                                                        payment_method=payment_method)
        async with engine.begin() as conn:
            trial_days = await trials.claim(
                conn, settings, plan, user_id=user_id, membership_id=membership_id,
                offered_days=promo.preview.trial_days if promo else plan["trial_days"],
                card_fingerprint=card, by_code=promo is not None,
            )
        state = await provider.create_subscription(
            customer_id=customer,
            stripe_plan_id=stripe_plan,
            metadata={"userId": user_id, "membershipId": str(membership_id), "planId": plan_id,
                      **({"promoCode": promo.code} if promo else {})},
            trial_days=trial_days,
            idempotency_key=f"pika-membership-{membership_id}",
        )
    except Exception as error:
        await undo_promo(engine, promo)
        # Refused (by Stripe, or by us before Stripe): the trial was not used. When Stripe's
        # answer is unknown (unavailable, or a bug of ours) the claim stays: the
        # subscription, and its trial, may exist.
        refused = isinstance(error, PaymentError) and not isinstance(error, DependencyUnavailable)
        async with engine.begin() as conn:
            await conn.execute(ABANDON, {"id": membership_id})
            if refused:
                await trials.give_back(conn, membership_id)
        raise
    async with engine.begin() as conn:
        await conn.execute(LINK, {"s": state.id, "id": membership_id})
        if promo is not None:
            await conn.execute(SET_RESERVATION, {"reservation": promo.reservation_id, "id": membership_id})
            await reservations.redeem(conn, promo.reservation_id)
        row = (await conn.execute(BY_ID, {"id": membership_id})).mappings().one()
    return membership_view(row, state), sync_command(user_id, membership_id, state, membership_id)


async def _change(
    engine: AsyncEngine,
    provider: SubscriptionProvider,
    live: dict[str, Any],
    plan: dict[str, Any],
    request_id: uuid.UUID,
) -> tuple[dict[str, Any], SyncMembership | None]:
    """Swap the subscription to `plan`; the next period's grant follows the new plan."""
    if live["status"] not in ("active", "trialing") or not live["stripe_subscription_id"]:
        raise InvalidState(f"a {live['status']} membership cannot change plan", status=live["status"])
    if live["plan_id"] == plan["id"]:
        raise SubscriptionAlreadyActive("the membership is already on this plan", planId=plan["id"])
    stripe_plan = await ensure_stripe_plan(engine, provider, plan["id"])
    state = await provider.change_plan(
        subscription_id=live["stripe_subscription_id"],
        item_id=None,
        stripe_plan_id=stripe_plan,
        idempotency_key=f"pika-change-{request_id}",
    )
    view = membership_view(live, state) | {"plan_id": plan["id"], "plan_name": plan["name"]}
    return view, sync_command(live["user_id"], live["id"], state, request_id)


async def cancel(
    engine: AsyncEngine,
    provider: SubscriptionProvider,
    *,
    user_id: str,
    immediately: bool,
    request_id: uuid.UUID,
) -> tuple[dict[str, Any], SyncMembership]:
    """Cancel at period end (default) or now; granted credits keep their own expiry."""
    async with engine.connect() as conn:
        live = await _live(conn, user_id)
    if live is None or not live["stripe_subscription_id"]:
        raise NotFound("no active membership to cancel", userId=user_id)
    state = await provider.cancel_subscription(
        subscription_id=live["stripe_subscription_id"],
        immediately=immediately,
        idempotency_key=f"pika-cancel-{request_id}",
    )
    return membership_view(live, state), sync_command(user_id, live["id"], state, request_id)
