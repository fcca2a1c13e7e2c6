"""`pika-payment remind`: publish `credits.expiring` reminders (a daily job).

The job only publishes and records; which batches are due, and the events for them,
are decided in services.notifications.reminders.

The reminder is not a ledger change, so it goes straight to `payment.events` with
an aiokafka producer rather than through a command and the outbox. Publish first,
then record the batches as reminded: a crash in between republishes the same event
ids, which the notify worker dedupes; the other order could lose reminders.
"""

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from services.db import make_engine
from services.kafka_security import kafka_client_options
from services.kafka_start import start_kafka_client
from services.notifications.reminders import due_reminders, record_reminded
from services.settings import Settings


async def publish_reminders(engine: AsyncEngine, settings: Settings) -> tuple[int, int]:
    """(users reminded, batches covered) of this run."""
    reminders = await due_reminders(engine, settings.expiry_reminder_days)
    if not reminders:
        return 0, 0
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=5)
    await start_kafka_client(producer, "remind", settings)
    try:
        futures = [
            await producer.send(
                settings.events_topic,
                value=reminder.model_dump_json().encode(),
                key=reminder.user_id.encode(),
                headers=[("event-type", reminder.type.encode())],
            )
            for reminder in reminders
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()
    await record_reminded(engine, reminders)
    return len(reminders), sum(len(r.payload.batches) for r in reminders)


async def remind_once(settings: Settings) -> tuple[int, int]:
    """One run of the job on its own small engine (the CLI and `run`'s daily round)."""
    engine = make_engine(settings, pool_size=1)
    try:
        return await publish_reminders(engine, settings)
    finally:
        await engine.dispose()
