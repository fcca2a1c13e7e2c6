"""What one email says, decided from the event alone (no I/O, easy to test).

Only the fields named here reach a template: a receipt shows the pack, credits,
bonus, amount and balance of the event (a membership receipt: plan, period, credits
granted, amount, balance), never card data or Stripe objects (the events carry none,
and nothing else is passed on).
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.events import (
    CreditsExpiring,
    Event,
    MembershipActivated,
    MembershipRenewed,
    PaymentFailed,
    PaymentRefunded,
    ReceiptRequested,
)
from services.errors import PaymentNotAccepted
from services.notifications.money import format_money

# Event type -> template name (files `<template>.txt` / `.html` under templates/).
TEMPLATES = {
    "receipt.requested": "receipt",
    "payment.failed": "payment_failed",
    "payment.refunded": "refund",
    "credits.expiring": "credits_expiring",
    "membership.activated": "membership",
    "membership.renewed": "membership",
}


@dataclass(frozen=True)
class Notification:
    template: str
    subject: str
    context: dict[str, Any]
    email: str | None
    """The address the event itself names (receipts, reminders), else None."""
    purchase_id: uuid.UUID | None
    """The purchase whose stored email is the best address when the event has none."""


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def notification_for(event: Event) -> Notification | None:
    """The email an event asks for, or None for events that send no email."""
    if isinstance(event, ReceiptRequested):
        receipt = event.payload
        return Notification(
            "receipt",
            f"Your receipt: {receipt.pack_name}",
            {
                "pack_name": receipt.pack_name,
                "credits": receipt.credits,
                "bonus_credits": receipt.bonus_credits,
                "total_credits": receipt.credits + receipt.bonus_credits,
                "amount": format_money(receipt.amount, receipt.currency),
                "balance_after": receipt.balance_after,
                "purchase_id": str(receipt.purchase_id),
                "date": _when(event.occurred_at),
            },
            receipt.email,
            receipt.purchase_id,
        )
    if isinstance(event, MembershipActivated | MembershipRenewed):
        membership = event.payload
        activated = isinstance(event, MembershipActivated)
        return Notification(
            "membership",
            f"Your membership {'is active' if activated else 'was renewed'}: "
            f"{membership.plan_name}",
            {
                "activated": activated,
                "plan_name": membership.plan_name,
                "period_start": _day(membership.period_start),
                "period_end": _day(membership.period_end),
                "credits_granted": membership.credits_granted,
                "amount": format_money(membership.amount, membership.currency),
                "balance_after": membership.balance_after,
                "membership_id": membership.membership_id,
                "date": _when(event.occurred_at),
            },
            membership.email,
            None,
        )
    if isinstance(event, PaymentFailed):
        payment = event.payload
        return Notification(
            "payment_failed",
            "Your membership payment did not go through"
            if payment.membership_id
            else "Your payment did not go through",
            {
                "pack_id": payment.pack_id,
                "plan_name": payment.plan_name,
                "membership_id": str(payment.membership_id) if payment.membership_id else None,
                "invoice_id": payment.invoice_id,
                "amount": format_money(payment.amount, payment.currency),
                "code": payment.code or PaymentNotAccepted.code,
                "attempt": payment.attempt,
                "purchase_id": str(payment.purchase_id) if payment.purchase_id else None,
                "date": _when(event.occurred_at),
            },
            payment.email,
            payment.purchase_id,
        )
    if isinstance(event, PaymentRefunded):
        payment = event.payload
        return Notification(
            "refund",
            "Your refund",
            {
                "pack_id": payment.pack_id,
                "refunded": format_money(payment.refunded, payment.currency),
                "amount": format_money(payment.amount, payment.currency),
                "full": payment.refunded >= payment.amount,
                "purchase_id": str(payment.purchase_id),
                "date": _when(event.occurred_at),
            },
            None,
            payment.purchase_id,
        )
    if isinstance(event, CreditsExpiring):
        reminder = event.payload
        return Notification(
            "credits_expiring",
            f"{reminder.credits} credits expire within {reminder.within_days} days",
            {
                "credits": reminder.credits,
                "within_days": reminder.within_days,
                "batches": [
                    {"remaining": b.remaining, "expires_at": _when(b.expires_at)}
                    for b in sorted(reminder.batches, key=lambda b: b.expires_at)
                ],
            },
            reminder.email,
            None,
        )
    return None
