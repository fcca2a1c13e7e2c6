"""A verified Stripe event as the one ledger command it stands for, or None: not ours.

The command id is derived from the Stripe event id, so a redelivered event is the same
command and the ledger applies it once. An event that does not fit our contract (a
missing field, a value of the wrong type) is logged by id and type and ignored; its
body is never logged.
"""

import logging
import uuid
from typing import Any

from pydantic import ValidationError

from adapters.stripe.membership_events import MEMBERSHIP_EVENTS, membership_command_for
from adapters.stripe.purchase_events import CHARGE_EVENTS, PURCHASE_EVENTS, purchase_command
from schemas.commands import CommandEnvelope
from services.memberships.ports import SubscriptionProvider
from services.stripe_events.record import Owners
from services.stripe_events.store import StripeEventRecord

log = logging.getLogger("pika.webhooks")
NAMESPACE = uuid.UUID("8c0f1b4e-3b9e-4f7e-a1d2-737472697065")
SOURCE = "stripe-webhook"
HANDLED = PURCHASE_EVENTS | MEMBERSHIP_EVENTS


def envelope_of(event: dict[str, Any]) -> dict[str, Any]:
    """The command id and source of an event's command: the same for every redelivery."""
    return {"id": uuid.uuid5(NAMESPACE, f"stripe:{event['id']}"), "source": SOURCE}


def record_of(event: dict[str, Any]) -> StripeEventRecord:
    """The event as the webhook inbox keeps it."""
    return StripeEventRecord(
        event_id=event["id"],
        type=event["type"],
        object_id=event["data"]["object"].get("id"),
        livemode=bool(event.get("livemode")),
    )


async def command_for(
    event: dict[str, Any], owners: Owners, subscriptions: SubscriptionProvider
) -> CommandEnvelope | None:
    """The command of a handled event; None when it is not about one of our payments.

    `owners` answers whose purchase or membership the event names; `subscriptions`
    is asked about a subscription only when an invoice beats our record of it.
    """
    obj = event["data"]["object"]
    purchaser = None
    if event["type"] in CHARGE_EVENTS and obj.get("payment_intent"):
        purchaser = await owners.purchaser_of_intent(obj["payment_intent"])
    try:
        envelope = envelope_of(event)
        if event["type"] in MEMBERSHIP_EVENTS:
            return await membership_command_for(event, envelope, owners, subscriptions)
        return purchase_command(event, envelope, purchaser)
    except (ValidationError, KeyError, TypeError, ValueError):
        log.warning("stripe event %s %s does not fit our contract; ignored", event["id"], event["type"])
        return None
