"""Reading `balance.changed` back from the events topic: when each charge's effect arrived."""

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer

from services.kafka_security import kafka_client_options
from services.settings import Settings


class EventWatch:
    """Receive times of `balance.changed` by command id, read from the start of the topic.

    fetch_max_wait_ms is small because tansu answers a fetch when its wait expires,
    not when data arrives: the default 500 ms would be measured as latency.
    """

    def __init__(self, settings: Settings) -> None:
        self.consumer = AIOKafkaConsumer(
            settings.events_topic,
            **kafka_client_options(settings),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self.arrived: dict[str, float] = {}
        self.relayed: dict[str, float] = {}  # Unix time the relay sent it (record timestamp)
        self.event_ids: dict[str, str] = {}  # command id -> its balance.changed's event id
        self.waiting: set[str] = set()
        self.rejected: dict[str, str] = {}  # command id -> why, for awaited charges refused
        self.complete = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.consumer.stop()

    def expect(self, command_ids: Iterable[str]) -> None:
        """Call before publishing: `complete` is set once all of them have arrived."""
        self.waiting = {c for c in command_ids if c not in self.arrived}
        if self.waiting:
            self.complete.clear()
        else:
            self.complete.set()

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=200, max_records=10_000)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    kinds = [v for k, v in record.headers if k == "event-type"]
                    if kinds and kinds[0] != b"balance.changed" and not kinds[0].endswith(b".rejected"):
                        continue  # the relay labels each record: skip parsing the others
                    event = json.loads(record.value or b"{}")
                    command_id = event.get("commandId")
                    kind = str(event.get("type", ""))
                    if kind.endswith(".rejected") and command_id in self.waiting:
                        self.rejected[command_id] = str(event.get("payload", {}).get("message"))
                    if kind != "balance.changed" or not command_id:
                        continue
                    if command_id not in self.arrived:
                        self.arrived[command_id] = now
                        self.relayed[command_id] = record.timestamp / 1000
                        self.event_ids[command_id] = str(event.get("id"))
                        self.waiting.discard(command_id)
            if not self.waiting:
                self.complete.set()
