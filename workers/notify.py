"""Notify worker, consumer side: `payment.events` → queued emails in Postgres.

Consumer group `payment-notify`, manual ack. For each event that asks for an email
the worker finds the recipient and claims a `sent_notifications` row (or records a
skip when no address is known) in one transaction per fetched batch; only after
that commit are the offsets acknowledged. Sending is the mailer's job
(`workers/mailer.py`), so a slow or failing SMTP server never holds up the
consumer, and one user's undeliverable email never holds up another's.

Events that ask for no email are acknowledged untouched. An event of a type this
worker mails about that does not validate goes to `payment.events.dlq`.
"""

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.events import event_adapter
from services.metrics import NOTIFICATIONS
from services.notifications import store
from services.notifications.compose import TEMPLATES, notification_for
from services.settings import Settings
from workers.dead_letters import send_to_dlq

log = logging.getLogger("pika.notify")
GROUP_ID = "payment-notify"


async def _no_decode(msg: Any) -> None:
    """The handler reads `msg.raw_message`: FastStream need not decode anything."""
    return None


def event_type(value: bytes | None) -> str | None:
    try:
        decoded = json.loads(value or b"")
    except ValueError:
        return None
    kind = decoded.get("type") if isinstance(decoded, dict) else None
    return kind if isinstance(kind, str) else None


async def queue_record(conn: AsyncConnection, record: ConsumerRecord) -> str | None:
    """Claim the email `record` asks for; a reason to dead-letter it, or None."""
    if event_type(record.value) not in TEMPLATES:
        return None
    raw = (record.value or b"").decode()
    try:
        event = event_adapter.validate_json(raw)
    except ValidationError as error:
        return f"invalid event: {error.errors(include_url=False, include_input=False)[:3]}"[:1000]
    notification = notification_for(event)
    if notification is None:
        return None
    recipient = notification.email or await store.recipient_for(
        conn, event.user_id, notification.purchase_id
    )
    if recipient is None:
        if await store.record_skip(
            conn, event.id, notification.template, event.user_id, "no email address known"
        ):
            log.info(
                "%s email for event %s skipped: no email address known for the user",
                notification.template, event.id, extra={"user_id": event.user_id},
            )
            NOTIFICATIONS.labels(template=notification.template, outcome="skipped").inc()
        return None
    claimed = await store.claim(
        conn, event.id, notification.template, event.user_id, recipient, raw
    )
    if not claimed:
        NOTIFICATIONS.labels(template=notification.template, outcome="duplicate").inc()
        log.info("event %s was handled before; nothing sent again", event.id)
    return None


async def queue_batch(
    broker: KafkaBroker, engine: AsyncEngine, settings: Settings, records: tuple[ConsumerRecord, ...]
) -> None:
    """Store every record's notification state in one transaction, then dead-letter."""
    rejects: list[tuple[ConsumerRecord, str]] = []
    async with engine.begin() as conn:
        for record in records:
            reason = await queue_record(conn, record)
            if reason:
                rejects.append((record, reason))
    for record, reason in rejects:
        log.warning("dead-lettering %s[%s]@%s: %s", record.topic, record.partition,
                    record.offset, reason)
        await send_to_dlq(broker, settings.events_dlq_topic, record, f"notify: {reason}")


def register_notify_consumer(
    broker: KafkaBroker,
    engine: AsyncEngine,
    settings: Settings,
    wake: Callable[[], None],
    listener: ConsumerRebalanceListener | None = None,
) -> None:
    """`listener` hears the group's assignments (the process's readiness uses it)."""

    @broker.subscriber(
        settings.events_topic,
        group_id=settings.topic(GROUP_ID),  # under TOPIC_PREFIX, as the ledger's group
        batch=True,
        max_records=100,
        batch_timeout_ms=50,
        fetch_max_wait_ms=20,
        decoder=_no_decode,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        listener=listener,
        include_in_schema=False,
    )
    async def queue_notifications(msg: KafkaMessage) -> None:
        records = msg.raw_message
        if not isinstance(records, tuple):
            records = (records,)
        try:
            await queue_batch(broker, engine, settings, records)
        except Exception as error:
            log.exception(
                "batch of %d events not stored (%s: %s); it will be redelivered",
                len(records), type(error).__name__, str(error).split("\n", 1)[0][:300],
            )
            await asyncio.sleep(1.0)
            await msg.nack()
            return
        await msg.ack()
        wake()
