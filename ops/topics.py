"""Explicit topic provisioning: a broker may auto-create topics with one partition."""

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.kafka_security import kafka_client_options
from services.settings import Settings

log = logging.getLogger("pika.topics")


def wanted_topics(settings: Settings) -> dict[str, int]:
    return {
        settings.commands_topic: settings.kafka_command_partitions,
        settings.internal_commands_topic: settings.kafka_command_partitions,
        settings.events_topic: settings.kafka_event_partitions,
        settings.commands_dlq_topic: 1,
        settings.events_dlq_topic: 1,
    }


async def provision_topics(settings: Settings, attempts: int = 30) -> list[str]:
    """Create missing topics; returns the names created. Waits for the broker to answer."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    for attempt in range(attempts):
        try:
            await admin.start()
            break
        except Exception:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, partitions, 1)
            for name, partitions in wanted_topics(settings).items()
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
            log.info("created topics %s", [t.name for t in missing])
        return [t.name for t in missing]
    finally:
        await admin.close()
