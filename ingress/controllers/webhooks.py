"""Stripe webhooks: verify, keep the allowed events once, hand them to the ledger.

The endpoint does no ledger work: it publishes a command whose id is derived from
the Stripe event id (redelivered events are harmless) and answers at once. What an
event means is the Stripe adapter's (`adapters/stripe/events.py`); keeping it with its
evidence is a use case (`services/stripe_events/record.py`).
The body is never logged; only the event id and type are.
"""

import logging
from typing import Any

import stripe
from litestar import Controller, Request, post

from adapters.stripe.events import HANDLED, command_for, record_of
from adapters.stripe.signature import verify_event
from ingress.deps import resources_of
from ingress.errors import error_responses
from services.errors import WebhookSignatureInvalid
from services.metrics import WEBHOOK_VERIFY_FAILED
from services.stripe_events.record import record_stripe_event

log = logging.getLogger("pika.webhooks")
MAX_BODY = 256 * 1024


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
        command = await record_stripe_event(
            res.uow, record_of(event), lambda owners: command_for(event, owners, res.payments)
        )
        if command is None:
            return {"received": True, "ignored": True}
        # Published every time, not only when new: if a crash came between the record and
        # the publish, Stripe's retry must still reach the ledger (which dedupes by id).
        await res.gateway.publish(command)
        log.info("stripe event %s %s accepted", event["id"], event["type"],
                 extra={"command_id": command.id, "user_id": command.user_id})
        return {"received": True, "commandId": str(command.id)}
