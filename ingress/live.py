"""Live balances: every ingress replica reads all of `payment.events` and pushes each
user's `balance.changed` to that user's open WebSockets on this replica.

Fan-out choice: one consumer per replica without a consumer group (it reads every
partition from the log end), rather than Redis pub/sub: Kafka already keeps the
per-user order, and a replica that starts late loses nothing a client needs, since
a client gets its current balance when it connects. Each connection has a bounded
queue; a client that falls behind is disconnected instead of growing memory. The
relay delivers at least once, so recent event ids are remembered and repeats dropped.
"""

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.kafka_security import kafka_client_options
from services.settings import Settings

log = logging.getLogger("pika.live")
QUEUE_SIZE = 100
REMEMBERED_EVENTS = 10_000


class SlowClient(Exception):
    """The client's queue is full: it will be disconnected."""


class Subscription:
    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = asyncio.Event()

    def offer(self, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed.set()


class BalanceHub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.subscribers: dict[str, set[Subscription]] = {}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def subscribe(self, user_id: str) -> Subscription:
        subscription = Subscription(user_id)
        self.subscribers.setdefault(user_id, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        group = self.subscribers.get(subscription.user_id, set())
        group.discard(subscription)
        if not group:
            self.subscribers.pop(subscription.user_id, None)

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                self.settings.events_topic,
                **kafka_client_options(self.settings),
                group_id=None,
                auto_offset_reset="latest",
                enable_auto_commit=False,
                fetch_max_wait_ms=20,
            )
            try:
                await consumer.start()
                self.ready.set()
                while True:
                    batch = await consumer.getmany(timeout_ms=500)
                    for records in batch.values():
                        for record in records:
                            self.dispatch(record.value)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # broker away: retry, the sockets stay open
                log.warning("live balance consumer failed (%s); retrying", type(error).__name__)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()

    def dispatch(self, raw: bytes | None) -> None:
        try:
            event = json.loads(raw or b"")
        except ValueError:
            return
        if event.get("type") != "balance.changed":
            return
        subscribers = self.subscribers.get(event.get("userId", ""))
        if not subscribers or event.get("id") in self.seen:
            return
        self.seen[event["id"]] = None
        if len(self.seen) > REMEMBERED_EVENTS:
            self.seen.popitem(last=False)
        message = {"type": "balance.changed", "eventId": event["id"],
                   "occurredAt": event.get("occurredAt"), **event.get("payload", {})}
        for subscription in list(subscribers):
            subscription.offer(message)
