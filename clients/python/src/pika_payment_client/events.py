"""Follow the service's events: `PaymentEvents`, a typed consumer of `payment.events`.

    events = PaymentEvents(BrokerSettings(bootstrap_servers="localhost:9092"),
                           group_id="notifier", dedupe=InMemoryDedupe())

    @events.on(BalanceChanged)
    async def show(event: BalanceChanged) -> None:
        print(event.user_id, event.payload.available)

    await events.run()  # until events.stop() or cancellation

Guarantees, and what they cost:

- **At least once, deduplicated.** The offset of an event is committed only after every
  handler of that event succeeded and its id was remembered by the `dedupe` store; an
  id the store has seen is skipped without calling the handlers. The relay's
  republished events are so handled once. The window: a crash (or a failed commit)
  after the handlers and before `remember` or the commit repeats that event's handlers
  once at the next start, so a handler must tolerate a rare repeat (send the email
  keyed by `event.id`, write with an upsert). A store that forgets (`InMemoryDedupe`
  at restart) widens the window to what is redelivered after a restart.
- **Per-user order.** The service keys events by user id, so one user's events come
  from one partition; they are handled one at a time in commit order.
- **Bounded retries, then stop.** A handler (or the dedupe store) that raises is called
  again after a growing pause, up to `retry.attempts` calls; then `run()` raises
  `EventHandlingFailed` without committing that event, so the next start reads it
  again. Handlers of the event that had already succeeded are not called again in this
  run. Keep `attempts` times the handler's time under aiokafka's `max_poll_interval_ms`
  (5 minutes), or the group takes the partition away meanwhile.
- **Invalid messages do not block.** A message that is not an event of this client's
  contracts (not JSON, an unknown type from a newer service, a `schemaVersion` other
  than 1, a field that does not validate) is logged with its position and the reason,
  never its body (events carry emails), handed to `on_invalid` if given (to park it
  somewhere), and committed past. Keep the client up to date with the service to read
  its new event types.
- **A new group starts at the earliest retained event** (`auto_offset_reset`): a gap
  would be silent, a replay is visible and deduplicated. A first start, or a group
  whose committed offsets expired while it was down, thus reads up to the topic's
  retention (7 days by default); a notifier that must not announce old news checks
  `event.occurred_at`, or starts its group once with `auto_offset_reset="latest"`.
"""

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError

from pika_payment_client.broker import BrokerSettings
from pika_payment_client.dedupe import DedupeStore
from pika_payment_client.dispatch import AnyHandler, E, Handler, Handlers, InvalidEvent, decode_event
from pika_payment_client.errors import PaymentClientError

log = logging.getLogger("pika_payment_client.events")
T = TypeVar("T")
POLL_TIMEOUT_MS = 500  # how long `run()` may take to notice `stop()` while the topic is idle
# Settings `PaymentEvents` owns: its guarantees rest on them.
_FIXED_OPTIONS = ("group_id", "enable_auto_commit", "auto_offset_reset")


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` calls at most (the first included), pausing `first_delay` seconds
    after the first failure and twice as long after each next one, up to `max_delay`."""

    attempts: int = 5
    first_delay: float = 0.5
    max_delay: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.first_delay < 0 or self.max_delay < self.first_delay:
            raise ValueError("need 0 <= first_delay <= max_delay")

    def delay(self, failures: int) -> float:
        """The pause after the `failures`-th failed call."""
        return float(min(self.max_delay, self.first_delay * 2 ** (failures - 1)))


class Record(Protocol):
    """What is read of an aiokafka `ConsumerRecord`."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class InvalidMessage:
    """A message of the events topic that is not a readable event, given to `on_invalid`.

    `value` is the raw body (it may hold personal data: store it as carefully as the
    events themselves); `reason` never quotes it.
    """

    value: bytes | None
    reason: str
    topic: str
    partition: int
    offset: int
    key: bytes | None


InvalidHandler = Callable[[InvalidMessage], Awaitable[None]]


class EventHandlingFailed(PaymentClientError):
    """An event could not be handled within the retry policy; its offset is not
    committed, so the consumer group reads it again at the next start.

    `step` is what failed (`handler <name>`, `dedupe.seen`, `dedupe.remember` or
    `on_invalid`); the last error is the `__cause__`.
    """

    def __init__(
        self, step: str, attempts: int, record: Record, event_id: uuid.UUID | None
    ) -> None:
        about = f"event {event_id}" if event_id else "invalid message"
        super().__init__(
            f"{step} failed {attempts} times for {about} at "
            f"{record.topic}[{record.partition}]@{record.offset}; not committed"
        )
        self.step = step
        self.attempts = attempts
        self.event_id = event_id
        self.topic = record.topic
        self.partition = record.partition
        self.offset = record.offset


class _Stopped(Exception):
    """`stop()` came while waiting to retry: leave the event uncommitted."""


class EventProcessor:
    """Handles one record: decode, dedupe, handlers with retries, remember.

    The Kafka loop of `PaymentEvents` commits a record's offset once `process` returned
    True; everything it decides is here, testable with plain records.
    """

    def __init__(
        self,
        handlers: Handlers,
        dedupe: DedupeStore,
        retry: RetryPolicy,
        on_invalid: InvalidHandler | None,
        stopping: asyncio.Event,
    ) -> None:
        self.handlers = handlers
        self.dedupe = dedupe
        self.retry = retry
        self.on_invalid = on_invalid
        self.stopping = stopping

    async def process(self, record: Record) -> bool:
        """True when the record is done with (its offset may be committed), False when
        `stop()` came during a retry pause; `EventHandlingFailed` when retries ran out."""
        try:
            await self._process(record)
        except _Stopped:
            return False
        return True

    async def _process(self, record: Record) -> None:
        try:
            event = decode_event(record.value)
        except InvalidEvent as invalid:
            await self._skip_invalid(record, invalid.reason)
            return
        handlers = self.handlers.for_event(event)
        if not handlers:  # nothing to do, nothing to remember
            return

        async def step(name: str, call: Callable[[], Awaitable[T]]) -> T:
            return await self._retrying(name, call, record, event.id)

        if await step("dedupe.seen", functools.partial(self.dedupe.seen, event.id)):
            log.debug("event %s (%s) already handled: skipped", event.id, type(event).__name__)
            return
        for handler in handlers:
            await step(f"handler {_name(handler)}", functools.partial(handler, event))
        await step("dedupe.remember", functools.partial(self.dedupe.remember, event.id))

    async def _skip_invalid(self, record: Record, reason: str) -> None:
        log.warning(
            "skipping a message that is not a readable event at %s[%d]@%d: %s",
            record.topic, record.partition, record.offset, reason,
        )
        if self.on_invalid is None:
            return
        message = InvalidMessage(
            record.value, reason, record.topic, record.partition, record.offset, record.key
        )
        await self._retrying("on_invalid", functools.partial(self.on_invalid, message), record, None)

    async def _retrying(
        self, step: str, call: Callable[[], Awaitable[T]], record: Record, event_id: uuid.UUID | None
    ) -> T:
        failures = 0
        while True:
            try:
                return await call()
            except Exception as error:
                failures += 1
                if failures >= self.retry.attempts:
                    log.error("%s failed for good on event %s: %r", step, event_id, error)
                    raise EventHandlingFailed(step, failures, record, event_id) from error
                pause = self.retry.delay(failures)
                log.warning(
                    "%s failed on event %s (%r); retry %d of %d in %.1f s",
                    step, event_id, error, failures, self.retry.attempts - 1, pause,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), pause)
            if self.stopping.is_set():
                raise _Stopped


def _name(handler: Callable[..., Any]) -> str:
    return str(getattr(handler, "__qualname__", None) or repr(handler))


class PaymentEvents:
    """Typed consumer of `payment.events` for the caller's consumer group.

    `dedupe` is required: the service delivers at least once, and forgetting to
    deduplicate shows up only when the relay repeats itself. `retry` bounds the calls of
    a failing handler; `on_invalid` gets the messages that are not readable events;
    `consumer_options` go to `AIOKafkaConsumer` (e.g. `session_timeout_ms`), except the
    settings the guarantees rest on (`group_id`, `enable_auto_commit`,
    `auto_offset_reset`). The guarantees are in the module docstring.

    `run()` starts the consumer, handles events until `stop()` or cancellation and
    closes the consumer; `async with events:` starts it (joins the group) before and
    closes it after, for a caller that runs it for a while.
    """

    def __init__(
        self,
        broker: BrokerSettings,
        *,
        group_id: str,
        dedupe: DedupeStore,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
        retry: RetryPolicy | None = None,
        on_invalid: InvalidHandler | None = None,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not group_id:
            raise ValueError("group_id is empty: each consuming service needs its own group")
        fixed = sorted(set(consumer_options or {}) & set(_FIXED_OPTIONS))
        if fixed:
            raise ValueError(f"PaymentEvents sets {', '.join(fixed)} itself: pass them as its arguments")
        self.broker = broker
        self.group_id = group_id
        self.auto_offset_reset = auto_offset_reset
        self.consumer_options = dict(consumer_options or {})
        self.handlers = Handlers()
        self._stopping = asyncio.Event()
        self.processor = EventProcessor(
            self.handlers, dedupe, retry or RetryPolicy(), on_invalid, self._stopping
        )
        self._consumer: Any = None
        self._idle = asyncio.Event()  # set while no run() is running
        self._idle.set()

    @property
    def topic(self) -> str:
        return self.broker.events_topic

    def on(self, model: type[E]) -> Callable[[Handler[E]], Handler[E]]:
        """Decorator: call the handler with every event of `model`, typed as `model`.
        Several handlers may share a model; they run one after the other, in the order
        they were registered."""
        return self.handlers.on(model)

    def on_any(self, handler: AnyHandler) -> AnyHandler:
        """Decorator: call the handler with every event the contracts know."""
        return self.handlers.on_any(handler)

    def stop(self) -> None:
        """Ask `run()` to return after the event at hand (safe from a signal handler);
        an event waiting to be retried is left uncommitted. Asked before `run()`, it
        makes the next `run()` return at once."""
        self._stopping.set()

    async def start(self) -> None:
        """Connect and join the group (`run()` does it when needed)."""
        if self._consumer is not None:
            return
        consumer = AIOKafkaConsumer(
            self.topic,
            **{**self.broker.aiokafka_options(), **self.consumer_options},
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    async def close(self) -> None:
        """Leave the group and disconnect; committed offsets stay."""
        self._stopping.clear()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
        await self._idle.wait()  # a run() in another task returns before the consumer closes
        await self.close()

    async def run(self) -> None:
        """Handle events until `stop()` or cancellation; `EventHandlingFailed` when an
        event's handlers keep failing (that event is left uncommitted)."""
        if not self._idle.is_set():
            raise RuntimeError("PaymentEvents.run() is already running")
        self._idle.clear()
        owned = self._consumer is None
        try:
            await self.start()
            while not self._stopping.is_set():
                batch = await self._consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
                await self._handle_batch(batch)
        finally:
            self._stopping.clear()  # the stop is done: a next run() runs
            try:
                if owned:
                    await self.close()
            finally:
                self._idle.set()

    async def _handle_batch(self, batch: Mapping[TopicPartition, list[Any]]) -> None:
        """Process each partition's records in order, then commit what is done; on a
        failure or stop, commit what was done before it and rewind to the rest."""
        consumer = self._consumer
        done: dict[TopicPartition, int] = {}
        try:
            for partition, records in batch.items():
                for record in records:
                    if self._stopping.is_set() or partition not in consumer.assignment():
                        break  # stopping, or the group gave the partition to another member
                    if not await self.processor.process(record):
                        break
                    done[partition] = record.offset + 1
        finally:
            assigned = consumer.assignment()
            for partition, records in batch.items():
                if partition in assigned and done.get(partition) != records[-1].offset + 1:
                    # the next getmany of this consumer reads the rest again
                    consumer.seek(partition, done.get(partition, records[0].offset))
            await self._commit({tp: offset for tp, offset in done.items() if tp in assigned})

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as error:
            # A rebalance took the partitions: their new owner reads these events again
            # and the dedupe store skips the ones remembered here.
            log.warning("offsets not committed (%s); the events will be redelivered", error)
