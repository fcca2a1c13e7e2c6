"""What `PaymentEvents` does with each record, and what it commits, without a broker."""

import asyncio
import uuid
from typing import Any

import pytest
from samples import FakeRecord, balance_changed, credits_charged, record_of

from pika_payment_client import (
    EventHandlingFailed,
    InMemoryDedupe,
    InvalidMessage,
    PaymentEvents,
    RetryPolicy,
)
from pika_payment_client.broker import BrokerSettings
from pika_payment_client.contracts.events import BalanceChanged
from pika_payment_client.dispatch import Handlers
from pika_payment_client.events import EventProcessor

FAST = RetryPolicy(attempts=3, first_delay=0.001, max_delay=0.002)


class CountingDedupe(InMemoryDedupe):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def seen(self, event_id: uuid.UUID) -> bool:
        self.calls.append("seen")
        return await super().seen(event_id)

    async def remember(self, event_id: uuid.UUID) -> None:
        self.calls.append("remember")
        await super().remember(event_id)


def processor(
    handlers: Handlers, dedupe: InMemoryDedupe | None = None, on_invalid: Any = None,
    retry: RetryPolicy = FAST, stopping: asyncio.Event | None = None,
) -> EventProcessor:
    return EventProcessor(
        handlers, InMemoryDedupe() if dedupe is None else dedupe, retry, on_invalid,
        stopping or asyncio.Event(),
    )


async def test_a_repeated_event_is_handled_once() -> None:
    handlers, seen = Handlers(), []

    @handlers.on(BalanceChanged)
    async def show(event: BalanceChanged) -> None:
        seen.append(event.id)

    dedupe = CountingDedupe()
    events = processor(handlers, dedupe)
    event = balance_changed()
    assert await events.process(record_of(event, offset=1))
    assert await events.process(record_of(event, offset=2))
    assert seen == [event.id]
    assert dedupe.calls == ["seen", "remember", "seen"]


async def test_an_event_nobody_handles_costs_no_dedupe_call() -> None:
    handlers = Handlers()

    @handlers.on(BalanceChanged)
    async def show(event: BalanceChanged) -> None:
        raise AssertionError("not a balance change")

    dedupe = CountingDedupe()
    assert await processor(handlers, dedupe).process(record_of(credits_charged()))
    assert dedupe.calls == []


async def test_a_failing_handler_is_retried_alone_until_it_succeeds() -> None:
    handlers, calls = Handlers(), {"first": 0, "flaky": 0}

    @handlers.on(BalanceChanged)
    async def first(event: BalanceChanged) -> None:
        calls["first"] += 1

    @handlers.on(BalanceChanged)
    async def flaky(event: BalanceChanged) -> None:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError("mail server busy")

    dedupe = InMemoryDedupe()
    event = balance_changed()
    assert await processor(handlers, dedupe).process(record_of(event))
    assert calls == {"first": 1, "flaky": 3}
    assert await dedupe.seen(event.id)


async def test_a_handler_that_keeps_failing_stops_processing_and_is_not_remembered() -> None:
    handlers, later = Handlers(), []

    @handlers.on(BalanceChanged)
    async def broken(event: BalanceChanged) -> None:
        raise ConnectionError("mail server down")

    @handlers.on(BalanceChanged)
    async def after(event: BalanceChanged) -> None:
        later.append(event.id)

    dedupe = InMemoryDedupe()
    event = balance_changed()
    with pytest.raises(EventHandlingFailed) as failed:
        await processor(handlers, dedupe).process(record_of(event, offset=41, partition=2))
    assert failed.value.step.startswith("handler ") and "broken" in failed.value.step
    assert (failed.value.attempts, failed.value.partition, failed.value.offset) == (3, 2, 41)
    assert failed.value.event_id == event.id
    assert isinstance(failed.value.__cause__, ConnectionError)
    assert later == [] and not await dedupe.seen(event.id)


async def test_a_dedupe_store_that_fails_for_a_moment_is_retried() -> None:
    handlers, seen = Handlers(), []

    @handlers.on(BalanceChanged)
    async def show(event: BalanceChanged) -> None:
        seen.append(event.id)

    class Flaky(InMemoryDedupe):
        failures = 1

        async def remember(self, event_id: uuid.UUID) -> None:
            if self.failures:
                self.failures -= 1
                raise TimeoutError("redis timeout")
            await super().remember(event_id)

    dedupe, event = Flaky(), balance_changed()
    assert await processor(handlers, dedupe).process(record_of(event))
    assert seen == [event.id] and await dedupe.seen(event.id)


async def test_stop_during_a_retry_pause_leaves_the_event_undone() -> None:
    handlers, stopping = Handlers(), asyncio.Event()

    @handlers.on(BalanceChanged)
    async def broken(event: BalanceChanged) -> None:
        stopping.set()
        raise ConnectionError("down")

    dedupe, event = InMemoryDedupe(), balance_changed()
    slow = RetryPolicy(attempts=5, first_delay=30, max_delay=30)
    done = await asyncio.wait_for(processor(handlers, dedupe, retry=slow, stopping=stopping)
                                  .process(record_of(event)), 5)
    assert done is False and not await dedupe.seen(event.id)


async def test_an_invalid_message_goes_to_on_invalid_and_is_done() -> None:
    handlers, parked = Handlers(), []

    async def park(message: InvalidMessage) -> None:
        parked.append(message)

    raw = b'{"type": "credits.teleported", "schemaVersion": 1}'
    assert await processor(handlers, on_invalid=park).process(FakeRecord(raw, offset=9, key=b"u-9"))
    assert parked == [InvalidMessage(raw, "unknown event type 'credits.teleported'", "payment.events", 0, 9,
                                     b"u-9")]
    assert await processor(handlers).process(FakeRecord(b"not json"))  # no callback: skipped


class FakeConsumer:
    """The part of AIOKafkaConsumer the loop uses, with one partition's records."""

    def __init__(self, records: list[FakeRecord]) -> None:
        from aiokafka import TopicPartition

        self.partition = TopicPartition("payment.events", 0)
        self.records = records
        self.position = 0
        self.commits: list[int] = []

    def assignment(self) -> set[Any]:
        return {self.partition}

    async def getmany(self, timeout_ms: int = 0) -> dict[Any, list[FakeRecord]]:
        batch = [r for r in self.records if r.offset >= self.position]
        if not batch:  # nothing new: wait, as the broker does
            await asyncio.sleep(timeout_ms / 1000)
        self.position = self.records[-1].offset + 1
        return {self.partition: batch} if batch else {}

    def seek(self, partition: Any, offset: int) -> None:
        self.position = offset

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.commits.append(offsets[self.partition])

    async def stop(self) -> None:
        pass


def consumer_of(events: PaymentEvents, records: list[FakeRecord]) -> FakeConsumer:
    fake = FakeConsumer(records)
    events._consumer = fake  # as if started: run() uses it and leaves it open
    return fake


async def test_run_commits_past_the_handled_events_and_not_past_a_failing_one() -> None:
    events = PaymentEvents(
        BrokerSettings("localhost:9092"), group_id="g", dedupe=InMemoryDedupe(), retry=FAST
    )
    good, bad = balance_changed(available=1), balance_changed(available=2)
    handled: list[int] = []

    @events.on(BalanceChanged)
    async def show(event: BalanceChanged) -> None:
        if event.id == bad.id:
            raise ValueError("cannot show")
        handled.append(event.payload.available)

    fake = consumer_of(events, [record_of(good, 5), FakeRecord(b"junk", 6), record_of(bad, 7),
                                record_of(balance_changed(available=3), 8)])
    with pytest.raises(EventHandlingFailed) as failed:
        await events.run()
    assert failed.value.offset == 7
    assert handled == [1]
    assert fake.commits == [7]  # past the event and the junk, not past the failing event
    assert fake.position == 7  # the next getmany reads the failing event again


async def test_run_returns_on_stop_after_committing() -> None:
    events = PaymentEvents(BrokerSettings("localhost:9092"), group_id="g", dedupe=InMemoryDedupe())
    handled: list[int] = []

    @events.on(BalanceChanged)
    async def show(event: BalanceChanged) -> None:
        handled.append(event.payload.available)
        if len(handled) == 2:
            events.stop()

    fake = consumer_of(events, [record_of(balance_changed(available=n), n) for n in (1, 2, 3)])
    await asyncio.wait_for(events.run(), 5)
    assert handled == [1, 2]
    assert fake.commits == [3] and fake.position == 3


@pytest.mark.parametrize("option", ["group_id", "enable_auto_commit", "auto_offset_reset"])
def test_the_guarantees_settings_cannot_be_overridden(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        PaymentEvents(BrokerSettings("localhost:9092"), group_id="g", dedupe=InMemoryDedupe(),
                      consumer_options={option: "x"})


def test_a_group_is_required() -> None:
    with pytest.raises(ValueError):
        PaymentEvents(BrokerSettings("localhost:9092"), group_id="", dedupe=InMemoryDedupe())


async def test_a_stop_asked_before_run_makes_it_return_at_once_and_only_once() -> None:
    events = PaymentEvents(BrokerSettings("localhost:9092"), group_id="g", dedupe=InMemoryDedupe())
    handled: list[int] = []

    @events.on(BalanceChanged)
    async def show(event: BalanceChanged) -> None:
        handled.append(event.payload.available)
        events.stop()

    fake = consumer_of(events, [record_of(balance_changed(available=n), n) for n in (1, 2)])
    events.stop()
    await asyncio.wait_for(events.run(), 5)
    assert handled == [] and fake.commits == []
    await asyncio.wait_for(events.run(), 5)  # the earlier stop is spent
    assert handled == [1] and fake.commits == [2]


async def test_leaving_async_with_stops_a_run_in_another_task_before_closing() -> None:
    events = PaymentEvents(BrokerSettings("localhost:9092"), group_id="g", dedupe=InMemoryDedupe())
    closed: list[bool] = []

    async def start() -> None:
        fake = consumer_of(events, [record_of(balance_changed(available=1), 1)])

        async def stop() -> None:
            closed.append(task.done())

        fake.stop = stop  # type: ignore[method-assign]

    events.start = start  # type: ignore[method-assign]
    async with events:
        task = asyncio.create_task(events.run())
        await asyncio.sleep(0.01)
        assert not task.done()
    assert task.done() and task.exception() is None
    assert closed == [True]
