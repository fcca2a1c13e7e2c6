"""Dead-letter publishing: the original bytes, untouched, with the reason in headers."""

from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from services.metrics import DEAD_LETTERS


async def send_to_dlq(
    broker: KafkaBroker, topic: str, record: ConsumerRecord, reason: str
) -> None:
    """Keep what cannot be applied for a human, so the consumer can move on."""
    await broker.publish(
        record.value or b"",
        topic=topic,
        key=record.key,
        headers={
            "x-dlq-reason": reason[:1000],
            "x-original-topic": record.topic,
            "x-original-partition": str(record.partition),
            "x-original-offset": str(record.offset),
        },
    )
    DEAD_LETTERS.labels(topic=topic).inc()
