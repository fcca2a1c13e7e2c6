"""The Python client's `PaymentEvents` against the real stack: ledger worker, outbox relay,
the broker, Redis and Postgres.

Each test reads `payment.events` with its own consumer group from the earliest event
and keeps only its own (fresh) user's events. Repeated events are made the way they
happen in production: the relay publishes a user's outbox rows again after they are
marked unsent (`republish`). Messages that are not events go to a private topic of the
test, so the session's other readers of `payment.events` never see them.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import pytest
import redis.asyncio as redis
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pika_payment_client import (
    DedupeStore,
    EventHandlingFailed,
    InMemoryDedupe,
    InvalidMessage,
    PaymentEvents,
    PostgresDedupe,
    RedisDedupe,
    RetryPolicy,
)
from pika_payment_client.broker import BrokerSettings
from pika_payment_client.contracts.events import (
    BalanceChanged,
    CreditsCharged,
    CreditsGranted,
    EventEnvelope,
)

from schemas.commands import ChargeCredits, ChargePayload, GrantCredits, GrantPayload
from services.ledger import outbox_store
from services.settings import Settings
from tests.conftest import EventLog, publish, wait_processed

E = TypeVar("E", bound=EventEnvelope)
FAST_RETRY = RetryPolicy(attempts=4, first_delay=0.05, max_delay=0.2)


def grant(user: str, credits: int) -> GrantCredits:
    return GrantCredits(user_id=user, payload=GrantPayload(credits=credits, reason="client test"))


def charge(user: str, credits: int, reference: str) -> ChargeCredits:
    return ChargeCredits(user_id=user, payload=ChargePayload(credits=credits, reference=reference))


def broker_of(settings: Settings, topic_prefix: str | None = None) -> BrokerSettings:
    return BrokerSettings(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        topic_prefix=settings.topic_prefix if topic_prefix is None else topic_prefix,
    )


def consumer(settings: Settings, dedupe: DedupeStore, group: str | None = None,
             **options: Any) -> PaymentEvents:
    """A PaymentEvents of its own group (or `group`), quick to join and leave."""
    return PaymentEvents(
        options.pop("broker", None) or broker_of(settings),
        group_id=group or f"client-test-{uuid.uuid4().hex[:10]}",
        dedupe=dedupe,
        consumer_options={"session_timeout_ms": settings.kafka_session_timeout_ms,
                          "heartbeat_interval_ms": settings.kafka_heartbeat_interval_ms},
        **options,
    )


def collect(events: PaymentEvents, model: type[E], user: str) -> list[E]:
    """The `user`'s events of `model` that `events` handles, in order."""
    got: list[E] = []

    @events.on(model)
    async def keep(event: E) -> None:
        if event.user_id == user:
            got.append(event)

    return got


async def run_until(events: PaymentEvents, done: Callable[[], bool], timeout: float = 45) -> None:
    """Run `events` until `done()`, then stop it; what `run()` raised is raised here."""
    task = asyncio.create_task(events.run())
    deadline = time.monotonic() + timeout
    while True:
        if done() or task.done() or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    events.stop()
    await asyncio.wait_for(task, 15)
    assert done(), "the consumer did not get what was expected in time"


async def applied(producer: AIOKafkaProducer, settings: Settings, engine: Any, *commands: Any) -> None:
    await publish(producer, settings, *commands)
    done = await wait_processed(engine, [command.id for command in commands])
    assert [done[command.id]["status"] for command in commands] == ["applied"] * len(commands)


async def republish(settings: Settings, user: str, timeout: float = 20) -> int:
    """Make the real relay publish `user`'s events again: once all their outbox rows are
    sent, mark them unsent (`sent_at`, the column the relay selects on) and wake it."""
    conn = await asyncpg.connect(settings.plain_database_url)
    try:
        deadline = time.monotonic() + timeout
        unsent = "SELECT count(*) FROM outbox WHERE key = $1 AND sent_at IS NULL"
        while True:
            if not await conn.fetchval(unsent, user) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        marked = await conn.execute(
            "UPDATE outbox SET sent_at = NULL WHERE key = $1 AND sent_at IS NOT NULL", user
        )
        await conn.execute(f"NOTIFY {outbox_store.CHANNEL}")
    finally:
        await conn.close()
    count = int(marked.split()[-1])
    assert count > 0, f"no sent outbox rows of {user}"
    return count


async def wait_repeated(events: EventLog, user: str, count: int) -> None:
    """Until the topic holds each of `user`'s `count` events twice."""
    def twice(event: dict[str, Any]) -> bool:
        return event.get("userId") == user

    found = await events.wait_for(twice, count=2 * count, timeout=30)
    ids = [event["id"] for event in found]
    assert len(ids) == 2 * count and all(ids.count(i) == 2 for i in ids), ids


async def test_balance_changes_arrive_typed_and_in_order(settings, engine, worker, relay, producer,
                                                         user_id):
    commands = [grant(user_id, 10), charge(user_id, 3, "booking-a"), charge(user_id, 2, "booking-b")]
    await applied(producer, settings, engine, *commands)
    events = consumer(settings, InMemoryDedupe())
    changes = collect(events, BalanceChanged, user_id)
    charged = collect(events, CreditsCharged, user_id)

    await run_until(events, lambda: len(changes) == 3 and len(charged) == 2)
    assert all(type(event) is BalanceChanged for event in changes)
    assert [(e.payload.available, e.payload.held, e.payload.delta) for e in changes] == [
        (10, 0, 10), (7, 0, -3), (5, 0, -2)
    ]
    assert [event.command_id for event in changes] == [command.id for command in commands]
    assert [(e.payload.credits, e.payload.reference) for e in charged] == [(3, "booking-a"), (2, "booking-b")]


async def test_a_restarted_group_resumes_after_what_it_committed(settings, engine, worker, relay,
                                                                 producer, user_id):
    group = f"client-test-{uuid.uuid4().hex[:10]}"
    await applied(producer, settings, engine, grant(user_id, 4))
    events = consumer(settings, InMemoryDedupe(), group)
    first = collect(events, BalanceChanged, user_id)
    await run_until(events, lambda: len(first) == 1)
    assert first[0].payload.available == 4
    await applied(producer, settings, engine, grant(user_id, 5))
    # A new process (an empty in-memory store) of the same group: only what is new.
    again = consumer(settings, InMemoryDedupe(), group)
    second = collect(again, BalanceChanged, user_id)
    await run_until(again, lambda: any(e.payload.available == 9 for e in second))
    assert [e.payload.available for e in second] == [9]


async def suppresses_repeats(settings, engine, producer, events_log: EventLog, user: str,
                             store: DedupeStore, replica_store: DedupeStore) -> list[uuid.UUID]:
    """A user's events published twice by the relay are handled once, and a consumer of
    another group whose store shares the same ids (a replica that lost its offsets)
    skips them too;
    the ids handled."""
    await applied(producer, settings, engine, grant(user, 6))
    await wait_repeated(events_log, user, await republish(settings, user))
    marker = grant(user, 1)  # after the repeats in the user's partition: all were read
    await applied(producer, settings, engine, marker)

    events = consumer(settings, store)
    handled = collect(events, BalanceChanged, user)

    await run_until(events, lambda: any(e.command_id == marker.id for e in handled))
    assert [e.payload.available for e in handled] == [6, 7]
    assert [e["id"] for e in events_log.events].count(str(handled[0].id)) == 2  # the topic has it twice

    late = grant(user, 2)
    await applied(producer, settings, engine, late)
    other = consumer(settings, replica_store)
    replica = collect(other, BalanceChanged, user)

    await run_until(other, lambda: any(e.command_id == late.id for e in replica))
    assert [e.payload.available for e in replica] == [9]
    return [e.id for e in handled + replica]


async def test_redis_dedupe_suppresses_a_repeated_event(settings, engine, worker, relay, producer,
                                                        events, user_id):
    client = redis.from_url(settings.redis_url)
    prefix = f"pika-client-test:{uuid.uuid4().hex}:"
    replica = RedisDedupe.from_url(settings.redis_url, prefix=prefix, ttl=timedelta(minutes=10))
    try:
        handled = await suppresses_repeats(
            settings, engine, producer, events, user_id,
            RedisDedupe(client, prefix=prefix, ttl=timedelta(minutes=10)), replica,
        )
        for event_id in handled:
            ttl = await client.ttl(f"{prefix}{event_id}")
            assert 0 < ttl <= 600
    finally:
        keys = [key async for key in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
        await replica.client.aclose()


async def test_postgres_dedupe_suppresses_a_repeated_event(settings, engine, worker, relay, producer,
                                                           events, user_id):
    pool = await asyncpg.create_pool(settings.plain_database_url, min_size=1, max_size=2)
    table = f"client_test_seen_{uuid.uuid4().hex[:10]}"
    replica = await PostgresDedupe.connect(settings.plain_database_url, table=table)
    try:
        handled = await suppresses_repeats(
            settings, engine, producer, events, user_id, PostgresDedupe(pool, table=table), replica
        )
        rows = await pool.fetch(f"SELECT event_id FROM {table}")  # other users' events too
        assert {row["event_id"] for row in rows} >= set(handled)
        await replica.forget_older_than(timedelta(hours=1))
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == len(rows)
        await replica.forget_older_than(timedelta(0))
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}")
        await pool.close()
        await replica.db.close()


async def test_a_failing_handler_is_retried_and_the_event_handled_once(settings, engine, worker, relay,
                                                                       producer, user_id):
    await applied(producer, settings, engine, grant(user_id, 8))
    calls: list[uuid.UUID] = []
    handled: list[int] = []
    events = consumer(settings, InMemoryDedupe(), retry=FAST_RETRY)

    @events.on(BalanceChanged)
    async def flaky(event: BalanceChanged) -> None:
        if event.user_id != user_id:
            return
        calls.append(event.id)
        if len(calls) <= 2:
            raise ConnectionError("push service unavailable")
        handled.append(event.payload.available)

    await run_until(events, lambda: bool(handled))
    assert handled == [8]
    assert len(calls) == 3 and len(set(calls)) == 1


async def test_an_event_that_keeps_failing_stops_the_consumer_and_is_redelivered(
    settings, engine, worker, relay, producer, user_id
):
    group = f"client-test-{uuid.uuid4().hex[:10]}"
    await applied(producer, settings, engine, grant(user_id, 3))
    attempts: list[uuid.UUID] = []
    events = consumer(settings, InMemoryDedupe(), group, retry=FAST_RETRY)

    @events.on(BalanceChanged)
    async def broken(event: BalanceChanged) -> None:
        if event.user_id == user_id:
            attempts.append(event.id)
            raise ConnectionError("push service down")

    with pytest.raises(EventHandlingFailed) as failed:
        await asyncio.wait_for(events.run(), 45)
    assert failed.value.step.startswith("handler ") and failed.value.attempts == 4
    assert failed.value.event_id == attempts[0] and attempts == [attempts[0]] * 4
    # The next start of the group gets the same event again: it was not committed.
    restarted = consumer(settings, InMemoryDedupe(), group)
    redelivered = collect(restarted, BalanceChanged, user_id)
    await run_until(restarted, lambda: bool(redelivered))
    assert [event.id for event in redelivered] == [attempts[0]]


async def test_a_message_that_is_not_an_event_goes_to_on_invalid_and_the_consumer_carries_on(
    settings, producer, user_id
):
    prefix = f"{settings.topic_prefix}client-{uuid.uuid4().hex[:8]}-"
    broker = broker_of(settings, prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(broker.events_topic, 1, 1)])
    finally:
        await admin.close()
    good = BalanceChanged.model_validate({
        "userId": user_id, "payload": {"available": 5, "held": 0, "total": 5, "delta": 5,
                                       "transactionId": str(uuid.uuid4()), "transactionType": "ADJUSTMENT"},
    })
    body = json.loads(good.model_dump_json())
    invalid = [
        b"{not json",
        json.dumps({**body, "id": str(uuid.uuid4()), "schemaVersion": 2}).encode(),
        json.dumps({**body, "id": str(uuid.uuid4()), "type": "credits.teleported"}).encode(),
        json.dumps({**body, "id": str(uuid.uuid4()),
                    "payload": {**body["payload"], "available": "5"}}).encode(),
    ]
    for value in [*invalid, good.model_dump_json().encode()]:
        await producer.send_and_wait(broker.events_topic, value=value, key=user_id.encode())
    parked: list[InvalidMessage] = []

    async def park(message: InvalidMessage) -> None:
        parked.append(message)

    group = f"client-test-{uuid.uuid4().hex[:10]}"
    events = consumer(settings, InMemoryDedupe(), group, broker=broker, on_invalid=park)
    handled = collect(events, BalanceChanged, user_id)
    await run_until(events, lambda: bool(handled))
    assert handled == [good]
    assert [message.value for message in parked] == invalid
    assert [message.offset for message in parked] == [0, 1, 2, 3]
    assert all(message.key == user_id.encode() for message in parked)
    reasons = [message.reason for message in parked]
    assert reasons[0] == "not JSON" and reasons[1].startswith("schemaVersion 2 is not 1")
    assert reasons[2] == "unknown event type 'credits.teleported'" and "payload.available" in reasons[3]
    # Committed past: the group's next start reads only what came after.
    later = good.model_copy(update={"id": uuid.uuid4()})
    await producer.send_and_wait(broker.events_topic, value=later.model_dump_json().encode(),
                                 key=user_id.encode())
    restarted = consumer(settings, InMemoryDedupe(), group, broker=broker, on_invalid=park)
    handled_after = collect(restarted, BalanceChanged, user_id)
    await run_until(restarted, lambda: bool(handled_after))
    assert handled_after == [later] and len(parked) == len(invalid)


async def test_granted_credits_reach_a_handler_of_their_own_model(settings, engine, worker, relay,
                                                                   producer, user_id):
    funding = grant(user_id, 12)
    await applied(producer, settings, engine, funding)
    events = consumer(settings, InMemoryDedupe())
    granted = collect(events, CreditsGranted, user_id)
    anything = collect(events, EventEnvelope, user_id)  # what on_any registers
    await run_until(events, lambda: len(granted) == 1 and len(anything) == 2)
    assert granted[0].payload.credits == 12 and granted[0].command_id == funding.id
    assert sorted(type(event).__name__ for event in anything) == ["BalanceChanged", "CreditsGranted"]
