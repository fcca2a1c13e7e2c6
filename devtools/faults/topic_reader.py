"""Reading a topic back from its beginning: `payment.events` to check, the DLQ to count."""

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from services.kafka_security import kafka_client_options
from services.settings import Settings


@dataclass
class Published:
    """One record read back from `payment.events`."""

    partition: int
    offset: int
    event_id: str
    command_id: str | None
    user_id: str
    type: str
    payload: dict[str, Any]


def parse_event(record: Any) -> Published | None:
    try:
        event = json.loads(record.value)
        return Published(
            record.partition, record.offset, str(event["id"]), event.get("commandId"),
            str(event.get("userId")), str(event.get("type")), event.get("payload") or {},
        )
    except (ValueError, KeyError, TypeError):
        return None


class TopicReader:
    """Reads a topic from its beginning, incrementally: `catch_up` reads to the log end."""

    def __init__(self, settings: Settings, topic: str, partitions: int) -> None:
        self.topic = topic
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer = AIOKafkaConsumer(
            **kafka_client_options(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        self.records: list[Any] = []

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        await self.consumer.seek_to_beginning(*self.partitions)

    async def catch_up(self, timeout: float = 60) -> None:
        end = await self.consumer.end_offsets(self.partitions)
        deadline = time.monotonic() + timeout
        while True:
            positions = [await self.consumer.position(tp) for tp in self.partitions]
            if all(pos >= end[tp] for pos, tp in zip(positions, self.partitions, strict=True)):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not read {self.topic} to its end in {timeout}s")
            batch = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batch.values():
                self.records.extend(records)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.consumer.stop()
