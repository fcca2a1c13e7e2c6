"""`pika-payment reconcile --stripe --since DATE`: grant what a lost webhook missed.

Lists the succeeded PaymentIntents in Stripe since DATE and, for each purchase of
ours still pending in the ledger, publishes the same `purchase.confirm` a webhook
would have (its id derived from the intent, so running this twice, or racing a late
webhook, grants once). Then it waits for the worker and reports what it fixed.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe
from aiokafka import AIOKafkaProducer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ingress.stripe_provider import make_client
from schemas.commands import ConfirmPurchase, ConfirmPurchasePayload
from services.ledger.queries import command_status
from services.settings import Settings

NAMESPACE = uuid.UUID("6d1f5c2a-7a0b-4c55-9b1e-7265636f6e63")
PENDING = text(
    "SELECT payment_intent_id, user_id FROM purchases "
    "WHERE status = 'pending' AND payment_intent_id = ANY(CAST(:ids AS text[]))"
)


@dataclass
class Fix:
    payment_intent_id: str
    user_id: str
    command_id: uuid.UUID
    outcome: str = "pending"


async def succeeded_intents(
    client: stripe.StripeClient, since: datetime
) -> AsyncIterator[dict[str, Any]]:
    """Succeeded PaymentIntents created since `since`, newest first.

    localstripe refuses the `created` filter; then the listing is filtered here.
    """
    cutoff = int(since.timestamp())
    try:
        page = await client.v1.payment_intents.list_async(
            params={"created": {"gte": cutoff}, "limit": 100}
        )
    except stripe.InvalidRequestError:
        page = await client.v1.payment_intents.list_async(params={"limit": 100})
    async for intent in page.auto_paging_iter():
        data: dict[str, Any] = intent.to_dict()
        if data["status"] == "succeeded" and data["created"] >= cutoff:
            yield data


async def reconcile_stripe(engine: AsyncEngine, settings: Settings, since: datetime) -> list[Fix]:
    client = make_client(settings)
    intents = {
        i["id"]: i
        async for i in succeeded_intents(client, since)
        if (i.get("metadata") or {}).get("purchaseId")
    }
    async with engine.connect() as conn:
        pending = (await conn.execute(PENDING, {"ids": list(intents)})).all()
    fixes: list[Fix] = []
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for intent_id, user_id in pending:
            intent = intents[intent_id]
            command = ConfirmPurchase(
                id=uuid.uuid5(NAMESPACE, intent_id),
                user_id=user_id,
                source="pika-payment-reconcile",
                payload=ConfirmPurchasePayload(
                    payment_intent_id=intent_id,
                    # localstripe leaves out amount_received; real Stripe always has it.
                    amount_received=intent.get("amount_received") or intent["amount"],
                    currency=intent["currency"],
                    stripe_event_id=f"reconcile:{intent_id}",
                ),
            )
            await producer.send_and_wait(
                settings.commands_topic,
                value=command.model_dump_json().encode(),
                key=user_id.encode(),
            )
            fixes.append(Fix(intent_id, user_id, command.id))
    finally:
        await producer.stop()
    deadline = time.monotonic() + 60
    while any(f.outcome == "pending" for f in fixes) and time.monotonic() < deadline:
        async with engine.connect() as conn:
            for fix in fixes:
                stored = await command_status(conn, fix.command_id)
                if stored:
                    fix.outcome = stored["status"] if not stored["error_code"] else stored["error_code"]
        await asyncio.sleep(0.2)
    return fixes
