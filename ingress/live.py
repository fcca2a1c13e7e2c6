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
from collections import OrderedDict, deque

from aiokafka import AIOKafkaConsumer
from litestar.serialization import encode_json

from services.kafka_security import kafka_client_options
from services.settings import Settings

log = logging.getLogger("pika.live")
QUEUE_SIZE = 100
REMEMBERED_EVENTS = 10_000
EVENT_TYPE_HEADER = "event-type"  # set by the relay on every record: skip others unparsed


class SlowClient(Exception):
    """The client's queue is full: it will be disconnected."""


class Subscription:
    """One socket's pending frames (at most QUEUE_SIZE), already serialized.

    The hub serializes each event once and offers the same text to every socket of
    the user; the socket's sender waits on one future only while nothing is pending
    (no task per frame). A full queue marks the client slow: it gets nothing more
    and its sender ends with SlowClient, which the route turns into a 4429 close.
    """

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.pending: deque[str] = deque()
        self.overflowed = False
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, frame: str) -> None:
        if self.overflowed:
            return
        if len(self.pending) >= QUEUE_SIZE:
            self.overflowed = True
        else:
            self.pending.append(frame)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self, timeout: float) -> str | None:
        """The next frame to send; None when none came within `timeout` (time to ping).

        Raises SlowClient once the queue has overflowed.
        """
        if not self.pending and not self.overflowed:
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(timeout, self._wake)
            try:
                await self._waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self.overflowed:
            raise SlowClient
        return self.pending.popleft() if self.pending else None


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
                            kinds = [v for k, v in record.headers if k == EVENT_TYPE_HEADER]
                            if not kinds or kinds[0] == b"balance.changed":
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
        frame = encode_json(message).decode()  # once per event, not once per socket
        for subscription in list(subscribers):
            subscription.offer(frame)
