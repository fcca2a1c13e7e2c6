"""`pika-payment expire`: publish expiry commands for due batches and stale holds.

Each run publishes fresh command ids: the handlers are idempotent on what they change
(an expired batch, a settled hold answer "already"), so running the job twice (or in two
replicas) changes nothing twice. Ids derived from the batch or hold id would be
predictable, and a producer could claim one first so that the batch never expires.
"""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.commands import (
    CommandEnvelope,
    ExpireCredits,
    ExpirePayload,
    ReleaseCredits,
    ReleasePayload,
)
from services.evidence.trusted_publisher import publish_with_evidence
from services.evidence.zones import Evidence
from services.kafka_security import kafka_client_options
from services.kafka_start import start_kafka_client
from services.ledger.expiry_queries import DUE_BATCHES, STALE_HOLDS
from services.promos.reservations import tidy_expired
from services.settings import Settings


async def due_commands(engine: AsyncEngine, limit: int = 100_000) -> list[CommandEnvelope]:
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        batches = (await conn.execute(DUE_BATCHES, {"now": now, "limit": limit})).all()
        holds = (await conn.execute(STALE_HOLDS, {"now": now, "limit": limit})).all()
    commands: list[CommandEnvelope] = [
        ExpireCredits(
            user_id=user_id,
            source="pika-payment-expire",
            payload=ExpirePayload(batch_id=batch_id),
        )
        for batch_id, user_id in batches
    ]
    commands += [
        ReleaseCredits(
            user_id=user_id,
            source="pika-payment-expire",
            payload=ReleasePayload(hold_id=uuid.UUID(str(hold_id)), reason="expired"),
        )
        for hold_id, user_id in holds
    ]
    return commands


async def publish_expiries(
    engine: AsyncEngine,
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    async with engine.begin() as conn:
        # Lapsed promo reservations: the counts already ignore them; this tidies status.
        await tidy_expired(conn, datetime.now(UTC))
    commands = await due_commands(engine)
    if not commands:
        return 0
    run = Evidence("operator_job", f"expire:{uuid.uuid4()}", "pika-payment expire")
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", linger_ms=5)
    await start_kafka_client(producer, "expire", settings)
    try:
        await publish_with_evidence(
            engine, producer, settings, [(command, run) for command in commands], progress
        )
    finally:
        await producer.stop()
    return len(commands)
