"""Stripe's PaymentIntent, Checkout and charge events as purchase commands.

A PaymentIntent or Checkout Session carries our metadata (`userId`, `purchaseId`);
a charge does not, so whose purchase a charge is about comes from our purchase row of
its PaymentIntent (`purchaser`), and a charge of no purchase of ours is ignored.
"""

import logging
from typing import Any, Literal

from schemas.commands import (
    CardPayload,
    CommandEnvelope,
    ConfirmPurchase,
    ConfirmPurchasePayload,
    DisputePayload,
    FailPurchase,
    FailPurchasePayload,
    FreezePurchase,
    RecordCard,
    RevokePurchase,
    RevokePurchasePayload,
    SettleDispute,
)

log = logging.getLogger("pika.webhooks")
CHARGE_EVENTS = frozenset(
    {"charge.refunded", "charge.dispute.created", "charge.dispute.closed", "charge.succeeded"}
)
PURCHASE_EVENTS = CHARGE_EVENTS | {
    "payment_intent.succeeded", "payment_intent.payment_failed", "checkout.session.completed"
}
# What a closed dispute means for the money. `warning_closed` is an inquiry that closed
# without a chargeback: the merchant keeps the money, as when the dispute is won. Only
# `lost` takes credits back; a status not listed here is ignored (the freeze stays for
# a human, and lapses with its hold), so no unexpected status can ever take credits.
CLOSED_DISPUTE_OUTCOME: dict[str, Literal["won", "lost"]] = {
    "won": "won", "warning_closed": "won", "lost": "lost"
}


def purchase_command(
    event: dict[str, Any], envelope: dict[str, Any], purchaser: str | None
) -> CommandEnvelope | None:
    """The ledger command of a purchase event, or None when it is not one of our payments.

    `purchaser` is the owner of the purchase of a charge's PaymentIntent.
    """
    if event["type"] in CHARGE_EVENTS:
        if not purchaser or not event["data"]["object"].get("payment_intent"):
            return None
        return _charge_command(event, envelope, purchaser)
    return _payer_command(event, envelope)


def _charge_command(
    event: dict[str, Any], envelope: dict[str, Any], purchaser: str
) -> CommandEnvelope | None:
    if event["type"].startswith("charge.dispute."):
        return _dispute_command(event, envelope, purchaser)
    if event["type"] == "charge.succeeded":
        return _card_command(event, envelope, purchaser)
    return _refund_command(event, envelope, purchaser)


def _dispute_command(
    event: dict[str, Any], envelope: dict[str, Any], purchaser: str
) -> CommandEnvelope | None:
    """An opened dispute freezes the purchase's credits; a closed one settles them."""
    dispute = event["data"]["object"]
    closed = event["type"] == "charge.dispute.closed"
    outcome = CLOSED_DISPUTE_OUTCOME.get(dispute.get("status")) if closed else "open"
    if outcome is None:
        log.warning("stripe event %s closes dispute %s with status %r; ignored",
                    event["id"], dispute["id"], dispute.get("status"))
        return None
    payload = DisputePayload(
        payment_intent_id=dispute["payment_intent"],
        dispute_id=dispute["id"],
        outcome=outcome,
        stripe_event_id=event["id"],
    )
    model = SettleDispute if closed else FreezePurchase
    return model(**envelope, user_id=purchaser, payload=payload)


def _card_command(
    event: dict[str, Any], envelope: dict[str, Any], purchaser: str
) -> CommandEnvelope | None:
    """Only the card's fingerprint matters here (fraud: one card, many accounts)."""
    charge = event["data"]["object"]
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    if not card.get("fingerprint"):
        return None
    return RecordCard(
        **envelope,
        user_id=purchaser,
        payload=CardPayload(
            payment_intent_id=charge["payment_intent"],
            fingerprint=card["fingerprint"],
            stripe_event_id=event["id"],
        ),
    )


def _refund_command(event: dict[str, Any], envelope: dict[str, Any], purchaser: str) -> CommandEnvelope:
    charge = event["data"]["object"]
    return RevokePurchase(
        **envelope,
        user_id=purchaser,
        payload=RevokePurchasePayload(
            payment_intent_id=charge["payment_intent"],
            amount_refunded=charge.get("amount_refunded", 0),
            currency=charge["currency"],
            stripe_event_id=event["id"],
        ),
    )


def _payer_command(event: dict[str, Any], envelope: dict[str, Any]) -> CommandEnvelope | None:
    """A Checkout Session's or PaymentIntent's command, for the user in its metadata."""
    obj = event["data"]["object"]
    metadata = obj.get("metadata") or {}
    user_id, purchase_id = metadata.get("userId"), metadata.get("purchaseId")
    if not user_id:
        return None
    envelope = {**envelope, "user_id": user_id}
    if event["type"] == "checkout.session.completed":
        return _checkout_command(event, envelope, purchase_id)
    if obj.get("object") != "payment_intent":
        return None
    if event["type"] == "payment_intent.succeeded":
        return _intent_succeeded_command(event, envelope, purchase_id)
    return _intent_failed_command(event, envelope)


def _checkout_command(
    event: dict[str, Any], envelope: dict[str, Any], purchase_id: str | None
) -> CommandEnvelope | None:
    session = event["data"]["object"]
    if session.get("payment_status") != "paid" or not session.get("payment_intent"):
        return None
    return ConfirmPurchase(
        **envelope,
        payload=ConfirmPurchasePayload(
            payment_intent_id=session["payment_intent"],
            purchase_id=purchase_id,
            amount_received=session.get("amount_total", 0),
            currency=session["currency"],
            stripe_event_id=event["id"],
        ),
    )


def _intent_succeeded_command(
    event: dict[str, Any], envelope: dict[str, Any], purchase_id: str | None
) -> CommandEnvelope:
    intent = event["data"]["object"]
    # localstripe omits amount_received; real Stripe always sends it on success.
    received = intent.get("amount_received", intent.get("amount", 0))
    return ConfirmPurchase(
        **envelope,
        payload=ConfirmPurchasePayload(
            payment_intent_id=intent["id"],
            purchase_id=purchase_id,
            amount_received=received,
            currency=intent["currency"],
            stripe_event_id=event["id"],
        ),
    )


def _intent_failed_command(event: dict[str, Any], envelope: dict[str, Any]) -> CommandEnvelope:
    intent = event["data"]["object"]
    error = intent.get("last_payment_error") or {}
    return FailPurchase(
        **envelope,
        payload=FailPurchasePayload(
            payment_intent_id=intent["id"],
            failure_code=error.get("decline_code") or error.get("code"),
            failure_message=(error.get("message") or None),
            stripe_event_id=event["id"],
        ),
    )
