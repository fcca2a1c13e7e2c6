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

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.stripe.subscriptions import from_epoch, subscription_state
from schemas.commands import (
    CommandEnvelope,
    FailMembershipPayment,
    GrantMembershipPeriod,
    MembershipFailurePayload,
    MembershipInvoicePayload,
)
from services.memberships.subscriptions import sync_command

PAID = frozenset({"invoice.paid", "invoice.payment_succeeded"})
SUBSCRIPTION_EVENTS = frozenset(
    {"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"}
)
MEMBERSHIP_EVENTS = PAID | SUBSCRIPTION_EVENTS | {"invoice.payment_failed"}
OWNER = text("SELECT user_id, id FROM memberships WHERE stripe_subscription_id = :s")


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


async def owner_of(conn: AsyncConnection, subscription_id: str) -> tuple[str, str] | None:
    row = (await conn.execute(OWNER, {"s": subscription_id})).first()
    return (str(row.user_id), str(row.id)) if row else None


def _subscription_line(invoice: dict[str, Any]) -> dict[str, Any] | None:
    """The line that pays a period; None for an invoice of prorations only (a plan
    change invoiced at once), which grants nothing: the period was granted already."""
    lines = (invoice.get("lines") or {}).get("data") or []
    regular = [li for li in lines if li.get("type") == "subscription" and not li.get("proration")]
    return regular[-1] if regular else None


def membership_command(
    event: dict[str, Any], envelope: dict[str, Any], user_id: str, membership_id: str | None
) -> CommandEnvelope | None:
    """The command of a membership event, or None when it is not about a subscription."""
    obj = event["data"]["object"]
    subscription = subscription_of(event)
    if not subscription:
        return None
    link = {"subscription_id": subscription, "membership_id": membership_id,
            "stripe_event_id": event["id"]}
    envelope = {**envelope, "user_id": user_id}
    if event["type"] in SUBSCRIPTION_EVENTS:
        state = subscription_state(obj)
        if event["type"] == "customer.subscription.deleted":
            state = dataclasses.replace(
                state, status="canceled", ended_at=state.ended_at or from_epoch(event.get("created"))
            )
        return sync_command(
            user_id, uuid.UUID(membership_id) if membership_id else None, state, envelope["id"],
            observed_at=int(event.get("created") or 0), stripe_event_id=event["id"],
            source=envelope["source"],
        )
    if event["type"] == "invoice.payment_failed":
        charge = obj.get("charge") if isinstance(obj.get("charge"), dict) else {}
        return FailMembershipPayment(**envelope, payload=MembershipFailurePayload(
            **link,
            invoice_id=obj["id"],
            attempt=max(int(obj.get("attempt_count") or 1), 1),
            amount_due=int(obj.get("amount_due") or 0),
            currency=obj["currency"],
            failure_code=(charge or {}).get("failure_code"),
        ))
    line = _subscription_line(obj)
    if line is None:
        return None
    period = line.get("period") or {}
    start = from_epoch(period.get("start") or obj.get("period_start"))
    end = from_epoch(period.get("end") or obj.get("period_end"))
    if start is None or end is None or end <= start:
        return None
    return GrantMembershipPeriod(**envelope, payload=MembershipInvoicePayload(
        **link,
        invoice_id=obj["id"],
        stripe_plan_id=_id(line.get("plan")),
        period_start=start,
        period_end=end,
        amount_paid=int(obj.get("amount_paid") or 0),
        currency=obj["currency"],
        billing_reason=obj.get("billing_reason"),
    ))
