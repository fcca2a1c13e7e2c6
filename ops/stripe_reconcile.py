"""`pika-payment reconcile --stripe [--since DATE] [--dry-run]`: grant what a lost webhook missed.

Lists the succeeded PaymentIntents in Stripe since DATE and matches each to one of our
purchases by the purchase id in the intent's metadata (`purchaseId`), else by the
intent id our row holds: a Checkout purchase learns its intent only from a webhook, so
its row has none until one arrives. Purchases still `pending`, or `failed` (a declined
attempt on an intent that later succeeded), get the same `purchase.confirm` a webhook
would have published; succeeded and refunded ones are never touched.

Nothing from Stripe decides *whose* credits these are: the user is our purchase row's.
Stripe's amount and currency go in the command as received, and the worker refuses an
intent whose amount, currency or id is not the purchase's (PAY002), as for a webhook.

Each run publishes fresh command ids (uuid4). The worker grants at most once per
purchase whatever the id (the row is locked and its status checked; a unique index
refuses a second CREDIT_PURCHASE for an intent), and once granted a purchase is no
longer a candidate, so reruns and late webhooks grant once. A derived id would make a
confirmation that was once refused (say the worker was down, or the row not yet
committed) answer that old refusal forever instead of being tried again.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stripe
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.stripe.client import make_client
from schemas.commands import ConfirmPurchase, ConfirmPurchasePayload
from services.evidence.trusted_publisher import publish_with_evidence
from services.evidence.zones import Evidence
from services.kafka_security import kafka_client_options
from services.kafka_start import start_kafka_client
from services.ledger.queries import command_status
from services.purchases.purchase_store import RECONCILE_CANDIDATES
from services.settings import Settings

SOURCE = "pika-payment-reconcile"
UNPAID = ("pending", "failed")


@dataclass
class Fix:
    purchase_id: uuid.UUID
    payment_intent_id: str
    user_id: str
    status: str  # ours when the run started: pending or failed
    amount_received: int
    currency: str
    also_paid_by: list[str] = field(default_factory=list)  # more succeeded intents naming it
    command_id: uuid.UUID | None = None  # None: --dry-run, nothing published
    outcome: str = "pending"


def _purchase_id_of(intent: dict[str, Any]) -> uuid.UUID | None:
    """The purchase id in the intent's metadata, if it is one (others share the account)."""
    value = (intent.get("metadata") or {}).get("purchaseId")
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


async def succeeded_intents(
    client: stripe.StripeClient, since: datetime, progress: Callable[[int], None] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Succeeded PaymentIntents created since `since`, newest first.

    `progress` is told how many intents were read so far (the listing can be long).
    localstripe refuses the `created` filter; then the listing is filtered here.
    """
    cutoff = int(since.timestamp())
    try:
        page = await client.v1.payment_intents.list_async(
            params={"created": {"gte": cutoff}, "limit": 100}
        )
    except stripe.InvalidRequestError:
        page = await client.v1.payment_intents.list_async(params={"limit": 100})
    read = 0
    async for intent in page.auto_paging_iter():
        read += 1
        if progress:
            progress(read)
        data: dict[str, Any] = intent.to_dict()
        if data["status"] == "succeeded" and data["created"] >= cutoff:
            yield data


async def missing_purchases(
    engine: AsyncEngine, intents: list[dict[str, Any]]
) -> list[Fix]:
    """Our unpaid purchases that a succeeded intent paid, one per purchase."""
    by_purchase = {i["id"]: _purchase_id_of(i) for i in intents}
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                RECONCILE_CANDIDATES,
                {
                    "statuses": list(UNPAID),
                    "ids": [str(p) for p in by_purchase.values() if p],
                    "intents": list(by_purchase),
                },
            )
        ).mappings().all()
    purchases = {row["id"]: row for row in rows}
    by_intent = {row["payment_intent_id"]: row for row in rows if row["payment_intent_id"]}
    paying: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for intent in intents:
        named = by_purchase[intent["id"]]
        row = (purchases.get(named) if named else None) or by_intent.get(intent["id"])
        if row is not None:
            paying.setdefault(row["id"], []).append(intent)
    found: list[Fix] = []
    for purchase_id, paid_by in paying.items():
        row = purchases[purchase_id]
        # The purchase's own intent first; any other one is a second payment to look at.
        paid_by.sort(key=lambda i: i["id"] != row["payment_intent_id"])
        intent = paid_by[0]
        found.append(
            Fix(
                purchase_id=purchase_id,
                payment_intent_id=intent["id"],
                user_id=row["user_id"],  # ours, never the intent's metadata
                status=row["status"],
                # localstripe leaves out amount_received; real Stripe always has it.
                amount_received=intent.get("amount_received") or intent["amount"],
                currency=intent["currency"],
                also_paid_by=[i["id"] for i in paid_by[1:]],
            )
        )
    return found


async def reconcile_stripe(
    engine: AsyncEngine,
    settings: Settings,
    since: datetime,
    *,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    timeout: float = 60,
) -> list[Fix]:
    client = make_client(settings)
    intents = [i async for i in succeeded_intents(client, since, progress)]
    fixes = await missing_purchases(engine, intents)
    if dry_run or not fixes:
        for fix in fixes:
            fix.outcome = "would be confirmed"
        return fixes
    run = uuid.uuid4()  # correlates the commands of one run in logs and processed_commands
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all")
    await start_kafka_client(producer, "reconcile --stripe", settings)
    try:
        for fix in fixes:
            command = ConfirmPurchase(
                user_id=fix.user_id,
                correlation_id=run,
                source=SOURCE,
                payload=ConfirmPurchasePayload(
                    payment_intent_id=fix.payment_intent_id,
                    purchase_id=fix.purchase_id,
                    amount_received=fix.amount_received,
                    currency=fix.currency,
                    stripe_event_id=f"reconcile:{fix.payment_intent_id}",
                ),
            )
            # The evidence: the PaymentIntent just read from Stripe with the secret key.
            evidence = Evidence("stripe_api", fix.payment_intent_id, SOURCE)
            await publish_with_evidence(engine, producer, settings, [(command, evidence)])
            fix.command_id = command.id
    finally:
        await producer.stop()
    deadline = time.monotonic() + timeout
    while any(f.outcome == "pending" for f in fixes) and time.monotonic() < deadline:
        async with engine.connect() as conn:
            for fix in fixes:
                if fix.outcome != "pending" or fix.command_id is None:
                    continue
                stored = await command_status(conn, fix.command_id)
                if stored:
                    fix.outcome = _outcome(stored)
        await asyncio.sleep(0.2)
    return fixes


def _outcome(stored: dict[str, Any]) -> str:
    if stored["error_code"]:
        return str(stored["error_code"])
    if (stored.get("result") or {}).get("already"):
        return "already granted"  # a webhook or another run was first
    return str(stored["status"])
