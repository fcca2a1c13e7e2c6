"""Dead-letter publishing: the original bytes, untouched, with the reason in headers."""

from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from services.metrics import DEAD_LETTERS

# The headers a dead letter carries (workers.contracts documents them in AsyncAPI).
REASON = "x-dlq-reason"
ORIGINAL_TOPIC = "x-original-topic"
ORIGINAL_PARTITION = "x-original-partition"
ORIGINAL_OFFSET = "x-original-offset"
NOTIFICATION_TEMPLATE = "x-notification-template"  # events DLQ, from the mailer
ATTEMPTS = "x-attempts"  # events DLQ, from the mailer


async def send_to_dlq(
    broker: KafkaBroker, topic: str, record: ConsumerRecord, reason: str
) -> None:
    """Keep what cannot be applied for a human, so the consumer can move on."""
    await broker.publish(
        record.value or b"",
        topic=topic,
        key=record.key,
        headers={
            REASON: reason[:1000],
            ORIGINAL_TOPIC: record.topic,
            ORIGINAL_PARTITION: str(record.partition),
            ORIGINAL_OFFSET: str(record.offset),
        },
    )
    DEAD_LETTERS.labels(topic=topic).inc()
