"""Explicit topic provisioning: a broker may auto-create topics with one partition.

Only where nobody else owns the topics (a laptop, compose, the tests): in k8s the
Strimzi KafkaTopic resources own them, and KAFKA_CREATE_TOPICS=false keeps
`pika-payment migrate` from creating any (ops/cli.py).
"""

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


def missing_topics(settings: Settings, existing: set[str]) -> list[NewTopic]:
    """The wanted topics not in `existing`, with KAFKA_TOPIC_REPLICATION_FACTOR replicas."""
    return [
        NewTopic(name, partitions, settings.kafka_topic_replication_factor)
        for name, partitions in wanted_topics(settings).items()
        if name not in existing
    ]


async def provision_topics(settings: Settings) -> list[str]:
    """Create missing topics; returns the names created. Waits for the broker to answer
    (at most KAFKA_STARTUP_TIMEOUT_SECONDS: `migrate` may run while the broker starts)."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await start_kafka_client(admin, "topic admin", settings)
    try:
        missing = missing_topics(settings, set(await admin.list_topics()))
        if missing:
            await admin.create_topics(missing)
            log.info("created topics %s", [t.name for t in missing])
        return [t.name for t in missing]
    finally:
        await admin.close()
