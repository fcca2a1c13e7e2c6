"""Publishing from the payment zone: record each command's evidence, then publish it on
the internal command topic.

The evidence is committed before the first byte reaches Kafka, so the worker never sees
a payment-zone command whose evidence is still in flight. If the publish fails after the
commit, the evidence stays and a retry with the same command id publishes again.
"""

from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.commands import CommandEnvelope
from services.evidence.store import record_evidence
from services.evidence.zones import Evidence
from services.settings import Settings
from services.tracing import producer_span, trace_headers


async def publish_with_evidence(
    engine: AsyncEngine,
    producer: AIOKafkaProducer,
    settings: Settings,
    entries: Sequence[tuple[CommandEnvelope, Evidence]],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Record, then publish every command (keyed by user: one user's commands keep order)."""
    async with engine.begin() as conn:
        await record_evidence(conn, entries)
    # With tracing on, one span for the run; its context goes with every command.
    with producer_span("publish commands", len(entries)):
        headers = trace_headers()
        futures = []
        for index, (command, _evidence) in enumerate(entries, 1):
            futures.append(
                await producer.send(
                    settings.internal_commands_topic,
                    value=command.model_dump_json().encode(),
                    key=command.user_id.encode(),
                    headers=headers,
                )
            )
            if progress and (index % 500 == 0 or index == len(entries)):
                progress(index, len(entries))
        for future in futures:
            await future
