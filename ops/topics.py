"""Explicit topic provisioning: a broker may auto-create topics with one partition."""

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.kafka_security import kafka_client_options
from services.kafka_start import start_kafka_client
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


async def provision_topics(settings: Settings) -> list[str]:
    """Create missing topics; returns the names created. Waits for the broker to answer
    (at most KAFKA_STARTUP_TIMEOUT_SECONDS: `migrate` may run while the broker starts)."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await start_kafka_client(admin, "topic admin", settings)
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
