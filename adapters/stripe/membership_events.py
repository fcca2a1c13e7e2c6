"""Stripe's subscription and invoice events as membership commands.

Which user and membership an event is about comes from our own record of the
subscription id first; an event that beats that record (Stripe sends it within a
second of creating the subscription) falls back to the subscription's metadata
(`userId`, `membershipId`), read from the event or, for invoices, which carry none
on every API version, from Stripe.
Only `invoice.payment_succeeded` / `invoice.paid` grant; real Stripe sends both for
one payment and the worker grants once per invoice.
"""

import dataclasses
import uuid
from typing import Any

from adapters.stripe.subscriptions import from_epoch, subscription_state
from schemas.commands import (
    CommandEnvelope,
    FailMembershipPayment,
    GrantMembershipPeriod,
    MembershipFailurePayload,
    MembershipInvoicePayload,
)
from services.memberships.ports import SubscriptionProvider
from services.memberships.subscriptions import sync_command
from services.stripe_events.record import Owners

PAID = frozenset({"invoice.paid", "invoice.payment_succeeded"})
SUBSCRIPTION_EVENTS = frozenset(
    {"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"}
)
MEMBERSHIP_EVENTS = PAID | SUBSCRIPTION_EVENTS | {"invoice.payment_failed"}


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def subscription_of(event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    if event["type"] in SUBSCRIPTION_EVENTS:
        return _id(obj.get("id"))
    parent = ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
    return _id(obj.get("subscription")) or _id(parent)


def metadata_of(event: dict[str, Any]) -> dict[str, str]:
    """The subscription's metadata when the event carries it."""
    obj = event["data"]["object"]
    if event["type"] in SUBSCRIPTION_EVENTS:
        return dict(obj.get("metadata") or {})
    details = obj.get("subscription_details") or (obj.get("parent") or {}).get("subscription_details")
    return dict((details or {}).get("metadata") or {})


async def membership_command_for(
    event: dict[str, Any],
    envelope: dict[str, Any],
    owners: Owners,
    subscriptions: SubscriptionProvider,
) -> CommandEnvelope | None:
    """A subscription's or invoice's command; None when the subscription is not ours."""
    subscription = subscription_of(event)
    if not subscription:
        return None
    owner = await owners.member_of_subscription(subscription)
    if owner is None:
        owner = await _owner_from_metadata(event, subscription, subscriptions)
        if owner is None:
            return None
    return membership_command(event, envelope, owner[0], owner[1] or None)


async def _owner_from_metadata(
    event: dict[str, Any], subscription: str, subscriptions: SubscriptionProvider
) -> tuple[str, str] | None:
    """(user id, membership id or "") from the subscription's metadata, for an event
    that beat our record of the subscription; an invoice that does not carry it (not
    every API version does) has Stripe asked for the subscription."""
    metadata = metadata_of(event)
    if not metadata.get("userId") and event["type"] not in SUBSCRIPTION_EVENTS:
        metadata = (await subscriptions.retrieve_subscription(subscription)).metadata or {}
    if not metadata.get("userId"):
        return None
    return (metadata["userId"], metadata.get("membershipId") or "")


def membership_command(
    event: dict[str, Any], envelope: dict[str, Any], user_id: str, membership_id: str | None
) -> CommandEnvelope | None:
    """The command of a membership event, or None when it is not about a subscription."""
    subscription = subscription_of(event)
    if not subscription:
        return None
    envelope = {**envelope, "user_id": user_id}
    if event["type"] in SUBSCRIPTION_EVENTS:
        return _sync_command(event, envelope, user_id, membership_id)
    link = {"subscription_id": subscription, "membership_id": membership_id,
            "stripe_event_id": event["id"]}
    if event["type"] == "invoice.payment_failed":
        return _failure_command(event["data"]["object"], envelope, link)
    return _grant_command(event["data"]["object"], envelope, link)


def _sync_command(
    event: dict[str, Any], envelope: dict[str, Any], user_id: str, membership_id: str | None
) -> CommandEnvelope:
    """The subscription as Stripe now has it; a deleted one is canceled and ended."""
    state = subscription_state(event["data"]["object"])
    if event["type"] == "customer.subscription.deleted":
        state = dataclasses.replace(
            state, status="canceled", ended_at=state.ended_at or from_epoch(event.get("created"))
        )
    return sync_command(
        user_id, uuid.UUID(membership_id) if membership_id else None, state, envelope["id"],
        observed_at=int(event.get("created") or 0), stripe_event_id=event["id"],
        source=envelope["source"],
    )


def _failure_command(
    invoice: dict[str, Any], envelope: dict[str, Any], link: dict[str, Any]
) -> CommandEnvelope:
    """A failed attempt to collect the invoice (dunning counts the attempts)."""
    charge = invoice.get("charge") if isinstance(invoice.get("charge"), dict) else {}
    return FailMembershipPayment(**envelope, payload=MembershipFailurePayload(
        **link,
        invoice_id=invoice["id"],
        attempt=max(int(invoice.get("attempt_count") or 1), 1),
        amount_due=int(invoice.get("amount_due") or 0),
        currency=invoice["currency"],
        failure_code=(charge or {}).get("failure_code"),
    ))


def _subscription_line(invoice: dict[str, Any]) -> dict[str, Any] | None:
    """The line that pays a period; None for an invoice of prorations only (a plan
    change invoiced at once), which grants nothing: the period was granted already."""
    lines = (invoice.get("lines") or {}).get("data") or []
    regular = [li for li in lines if li.get("type") == "subscription" and not li.get("proration")]
    return regular[-1] if regular else None


def _grant_command(
    invoice: dict[str, Any], envelope: dict[str, Any], link: dict[str, Any]
) -> CommandEnvelope | None:
    """The period a paid invoice pays for; None when it pays for no whole period."""
    line = _subscription_line(invoice)
    if line is None:
        return None
    period = line.get("period") or {}
    start = from_epoch(period.get("start") or invoice.get("period_start"))
    end = from_epoch(period.get("end") or invoice.get("period_end"))
    if start is None or end is None or end <= start:
        return None
    return GrantMembershipPeriod(**envelope, payload=MembershipInvoicePayload(
        **link,
        invoice_id=invoice["id"],
        stripe_plan_id=_id(line.get("plan")),
        period_start=start,
        period_end=end,
        amount_paid=int(invoice.get("amount_paid") or 0),
        currency=invoice["currency"],
        billing_reason=invoice.get("billing_reason"),
    ))
