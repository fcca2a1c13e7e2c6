"""`pika-payment migrate` and the topics: created where nobody else owns them, with
KAFKA_TOPIC_REPLICATION_FACTOR replicas; none at all with KAFKA_CREATE_TOPICS=false
(k8s, where the Strimzi KafkaTopic resources own them). On the suite's real broker."""

import asyncio
import uuid
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from ops.topics import wanted_topics
from services.kafka_security import kafka_client_options
from services.settings import Settings
from tests.test_cli import cli


def _fresh_prefix(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"topic_prefix": f"mt-{uuid.uuid4().hex[:8]}-", **changes})


async def _topics_with_prefix(settings: Settings) -> dict[str, list[int]]:
    """Topic -> replicas per partition, of the topics under `settings.topic_prefix`."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
        if not names:
            return {}
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return {t["topic"]: [len(p["replicas"]) for p in t["partitions"]] for t in described}


async def test_migrate_creates_no_topic_when_an_operator_owns_them(settings):
    operated = _fresh_prefix(settings, kafka_create_topics=False)
    done = await asyncio.to_thread(cli, operated, "migrate")
    assert done.returncode == 0, done.stderr
    assert "KAFKA_CREATE_TOPICS=false" in done.stderr
    assert await _topics_with_prefix(operated) == {}


async def test_migrate_creates_missing_topics_with_the_replication_factor(settings):
    # tansu keeps the requested replica list (one broker standing in for each), so the
    # factor migrate asked for is visible; a real cluster would refuse more than it has.
    local = _fresh_prefix(settings, kafka_topic_replication_factor=2)
    done = await asyncio.to_thread(cli, local, "migrate")
    assert done.returncode == 0, done.stderr
    topics = await _topics_with_prefix(local)
    assert topics.keys() == wanted_topics(local).keys()
    for name, partitions in wanted_topics(local).items():
        assert topics[name] == [2] * partitions, name
