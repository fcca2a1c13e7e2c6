"""Stripe webhooks: verify, keep the allowed events once, hand them to the ledger.

The endpoint does no ledger work: it publishes a command whose id is derived from
the Stripe event id (redelivered events are harmless) and answers at once.
The body is never logged; only the event id and type are.
"""

import logging
import uuid
from typing import Any, Literal

import stripe
from litestar import Controller, Request, post
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.stripe.membership_events import (
    MEMBERSHIP_EVENTS,
    SUBSCRIPTION_EVENTS,
    membership_command,
    metadata_of,
    owner_of,
    subscription_of,
)
from adapters.stripe.signature import verify_event
from ingress.deps import resources_of
from ingress.errors import error_responses
from ingress.resources import Resources
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
from services.errors import WebhookSignatureInvalid
from services.evidence.store import record_evidence
from services.evidence.zones import Evidence
from services.metrics import WEBHOOK_VERIFY_FAILED

log = logging.getLogger("pika.webhooks")
NAMESPACE = uuid.UUID("8c0f1b4e-3b9e-4f7e-a1d2-737472697065")
MAX_BODY = 256 * 1024
HANDLED = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "checkout.session.completed",
        "charge.refunded",
        "charge.dispute.created",
        "charge.dispute.closed",
        "charge.succeeded",
    }
) | MEMBERSHIP_EVENTS
PURCHASE_OBJECTS = {
    "charge.refunded", "charge.dispute.created", "charge.dispute.closed", "charge.succeeded"
}
# What a closed dispute means for the money. `warning_closed` is an inquiry that closed
# without a chargeback: the merchant keeps the money, as when the dispute is won. Only
# `lost` takes credits back; a status not listed here is ignored (the freeze stays for
# a human, and lapses with its hold), so no unexpected status can ever take credits.
CLOSED_DISPUTE_OUTCOME: dict[str, Literal["won", "lost"]] = {
    "won": "won", "warning_closed": "won", "lost": "lost"
}
OWNER_OF_INTENT = text("SELECT user_id FROM purchases WHERE payment_intent_id = :pi")
RECORD = text(
    "INSERT INTO stripe_events (event_id, type, object_id, livemode) VALUES (:id, :type, :obj, :live) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


def envelope_of(event: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid5(NAMESPACE, f"stripe:{event['id']}"), "source": "stripe-webhook"}


async def membership_command_for(
    res: Resources, conn: AsyncConnection, event: dict[str, Any]
) -> CommandEnvelope | None:
    """A subscription's or invoice's command; None when the subscription is not ours."""
    subscription = subscription_of(event)
    if not subscription:
        return None
    owner = await owner_of(conn, subscription)
    if owner is None:
        metadata = metadata_of(event)
        if not metadata.get("userId") and event["type"] not in SUBSCRIPTION_EVENTS:
            metadata = (await res.payments.retrieve_subscription(subscription)).metadata or {}
        if not metadata.get("userId"):
            return None
        owner = (metadata["userId"], metadata.get("membershipId") or "")
    return membership_command(event, envelope_of(event), owner[0], owner[1] or None)


def command_for(event: dict[str, Any], purchaser: str | None) -> CommandEnvelope | None:
    """The ledger command of an allowed event, or None when it is not one of our payments.

    `purchaser` is the owner of the purchase of a refunded charge (charges do not
    carry the PaymentIntent's metadata).
    """
    obj = event["data"]["object"]
    envelope = envelope_of(event)
    if event["type"] in PURCHASE_OBJECTS and (not purchaser or not obj.get("payment_intent")):
        return None
    if event["type"].startswith("charge.dispute."):
        closed = event["type"] == "charge.dispute.closed"
        outcome = CLOSED_DISPUTE_OUTCOME.get(obj.get("status")) if closed else "open"
        if outcome is None:
            log.warning("stripe event %s closes dispute %s with status %r; ignored",
                        event["id"], obj["id"], obj.get("status"))
            return None
        payload = DisputePayload(
            payment_intent_id=obj["payment_intent"],
            dispute_id=obj["id"],
            outcome=outcome,
            stripe_event_id=event["id"],
        )
        model = SettleDispute if closed else FreezePurchase
        return model(**envelope, user_id=purchaser, payload=payload)
    if event["type"] == "charge.succeeded":
        # Only the card's fingerprint matters here (fraud: one card, many accounts).
        card = (obj.get("payment_method_details") or {}).get("card") or {}
        if not card.get("fingerprint"):
            return None
        return RecordCard(
            **envelope,
            user_id=purchaser,
            payload=CardPayload(
                payment_intent_id=obj["payment_intent"],
                fingerprint=card["fingerprint"],
                stripe_event_id=event["id"],
            ),
        )
    if event["type"] == "charge.refunded":
        return RevokePurchase(
            **envelope,
            user_id=purchaser,
            payload=RevokePurchasePayload(
                payment_intent_id=obj["payment_intent"],
                amount_refunded=obj.get("amount_refunded", 0),
                currency=obj["currency"],
                stripe_event_id=event["id"],
            ),
        )
    metadata = obj.get("metadata") or {}
    user_id, purchase_id = metadata.get("userId"), metadata.get("purchaseId")
    if not user_id:
        return None
    envelope["user_id"] = user_id
    if event["type"] == "checkout.session.completed":
        if obj.get("payment_status") != "paid" or not obj.get("payment_intent"):
            return None
        return ConfirmPurchase(
            **envelope,
            payload=ConfirmPurchasePayload(
                payment_intent_id=obj["payment_intent"],
                purchase_id=purchase_id,
                amount_received=obj.get("amount_total", 0),
                currency=obj["currency"],
                stripe_event_id=event["id"],
            ),
        )
    intent = obj
    if intent.get("object") != "payment_intent":
        return None
    if event["type"] == "payment_intent.succeeded":
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


class StripeWebhookController(Controller):
    path = "/payment/webhooks"
    tags = ["webhooks"]

    @post("/stripe", operation_id="stripeWebhook", status_code=200, request_max_body_size=MAX_BODY,
          responses=error_responses(400, 503))
    async def stripe_event(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Signed Stripe events (`Stripe-Signature`, STRIPE_WEBHOOK_SECRET, 300 s tolerance)."""
        res = resources_of(request)
        body = await request.body()  # Litestar refuses more than MAX_BODY with 413
        try:
            event = verify_event(
                body, request.headers.get("stripe-signature"), res.settings.stripe_webhook_secret
            )
        except stripe.SignatureVerificationError as error:
            WEBHOOK_VERIFY_FAILED.inc()
            raise WebhookSignatureInvalid() from error
        except (ValueError, KeyError) as error:
            WEBHOOK_VERIFY_FAILED.inc()
            raise WebhookSignatureInvalid("the body is not a signed Stripe event") from error
        if event.get("type") not in HANDLED:
            return {"received": True, "ignored": True}
        obj = event["data"]["object"]
        async with res.engine.begin() as conn:
            purchaser = None
            if event["type"] in PURCHASE_OBJECTS and obj.get("payment_intent"):
                purchaser = await conn.scalar(OWNER_OF_INTENT, {"pi": obj["payment_intent"]})
            try:
                if event["type"] in MEMBERSHIP_EVENTS:
                    command = await membership_command_for(res, conn, event)
                else:
                    command = command_for(event, purchaser)
            except (ValidationError, KeyError, TypeError, ValueError):
                log.warning("stripe event %s %s does not fit our contract; ignored",
                            event["id"], event["type"])
                command = None
            if command is None:
                return {"received": True, "ignored": True}
            await conn.execute(
                RECORD,
                {
                    "id": event["id"],
                    "type": event["type"],
                    "obj": event["data"]["object"].get("id"),
                    "live": bool(event.get("livemode")),
                },
            )
            # In the same transaction as the event: the worker applies the command only
            # because this verified event stands behind it.
            await record_evidence(
                conn, [(command, Evidence("stripe_event", event["id"], "stripe-webhook"))]
            )
        # Published every time, not only when new: if a crash came between the record and
        # the publish, Stripe's retry must still reach the ledger (which dedupes by id).
        await res.gateway.publish(command)
        log.info("stripe event %s %s accepted", event["id"], event["type"],
                 extra={"command_id": command.id, "user_id": command.user_id})
        return {"received": True, "commandId": str(command.id)}
