"""What one email says, decided from the event alone (no I/O, easy to test).

Only the fields named here reach a template: a receipt shows the pack, credits,
bonus, amount and balance of the event, never card data or Stripe objects (the
events carry none, and nothing else is passed on).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.events import (
    CreditsExpiring,
    Event,
    PaymentFailed,
    PaymentRefunded,
    ReceiptRequested,
)
from services.notifications.money import format_money

# Event type -> template name (files `<template>.txt` / `.html` under templates/).
TEMPLATES = {
    "receipt.requested": "receipt",
    "payment.failed": "payment_failed",
    "payment.refunded": "refund",
    "credits.expiring": "credits_expiring",
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
    if isinstance(event, PaymentFailed):
        payment = event.payload
        return Notification(
            "payment_failed",
            "Your payment did not go through",
            {
                "pack_id": payment.pack_id,
                "amount": format_money(payment.amount, payment.currency),
                "code": payment.code or "PAY002",
                "attempt": payment.attempt,
                "purchase_id": str(payment.purchase_id),
                "date": _when(event.occurred_at),
            },
            None,
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
