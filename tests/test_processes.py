"""Worker and relay processes under concurrency and crashes (real broker, real Postgres)."""

import asyncio
import json
import random
import time
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from devtools.processes import free_port
from ops.topics import provision_topics
from schemas.commands import ChargeCredits, ChargePayload, GrantCredits, GrantPayload
from services.ledger.invariant_queries import reconcile
from tests.conftest import ChildProcess, publish, wait_processed


def grant(user: str, credits: int) -> GrantCredits:
    return GrantCredits(user_id=user, payload=GrantPayload(credits=credits, reason="fund"))


def charge(user: str, credits: int = 1) -> ChargeCredits:
    return ChargeCredits(
        user_id=user,
        correlation_id=uuid.uuid4(),
        payload=ChargePayload(credits=credits, reference=f"booking-{uuid.uuid4().hex[:8]}"),
    )


async def send_all(producer, topic, commands, key=None) -> None:
    futures = [
        await producer.send(
            topic,
            value=c.model_dump_json().encode(),
            key=(key(c) if key else c.user_id).encode(),
        )
        for c in commands
    ]
    await asyncio.gather(*futures)


async def consume_all(settings, topic: str, stop_when, timeout: float = 60) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    seen: list[dict] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop_when(seen):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen += [json.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return seen


@pytest.fixture
async def isolated(settings):
    """Settings with topics of their own, so extra workers do not touch the session's."""
    own = settings.model_copy(update={"topic_prefix": f"iso-{uuid.uuid4().hex[:6]}-"})
    await provision_topics(own)
    return own


async def test_two_workers_charging_one_user_never_overdraw(isolated, engine, producer, user_id):
    ports = [free_port(), free_port()]
    workers = [
        ChildProcess("worker", isolated.model_copy(update={"metrics_port": port})).start()
        for port in ports
    ]
    try:
        funding = grant(user_id, 100)
        await publish(producer, isolated, funding)
        await wait_processed(engine, [funding.id])
        charges = [charge(user_id) for _ in range(300)]
        # Random keys spread one user's charges over every partition, so both workers
        # apply them at the same time: only the row locks keep the balance right.
        await send_all(producer, isolated.commands_topic, charges, key=lambda _c: uuid.uuid4().hex)
        done = await wait_processed(engine, [c.id for c in charges], timeout=60)
        statuses = [row["status"] for row in done.values()]
        assert statuses.count("applied") == 100
        assert statuses.count("rejected") == 200
        assert {row["error_code"] for row in done.values() if row["status"] == "rejected"} == {
            "PAY001"
        }
        async with engine.connect() as conn:
            available = await conn.scalar(
                text("SELECT available FROM accounts WHERE user_id = :u"), {"u": user_id}
            )
        assert available == 0
        assert await reconcile(engine) == []
        async with httpx.AsyncClient(timeout=5) as client:
            scraped = "".join(
                [(await client.get(f"http://127.0.0.1:{port}/metrics")).text for port in ports]
            )
        counted = [
            line for line in scraped.splitlines()
            if line.startswith("payment_commands_total{") and 'type="credits.charge"' in line
        ]
        assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) >= 300
        assert "payment_batch_apply_seconds_count" in scraped
        assert "payment_consumer_lag{" in scraped
    finally:
        for child in workers:
            child.stop()


async def test_sigkill_mid_batch_loses_nothing_and_applies_nothing_twice(
    isolated, engine, producer
):
    debug = isolated.model_copy(update={"log_level": "DEBUG"})
    worker = ChildProcess("worker", debug, name="worker-killed").start()
    relay = ChildProcess("relay", isolated, name="relay-standby").start()
    users = [f"k-{uuid.uuid4().hex[:8]}" for _ in range(50)]
    try:
        fundings = [grant(u, 200) for u in users]
        await publish(producer, isolated, *fundings)
        await wait_processed(engine, [c.id for c in fundings], timeout=60)
        charges = [charge(random.choice(users)) for _ in range(3000)]
        await send_all(producer, isolated.commands_topic, charges)
        for _ in range(3):
            await asyncio.sleep(random.uniform(0.2, 0.6))
            worker.kill()  # SIGKILL: no clean shutdown, uncommitted batch in flight
            worker.start()
        done = await wait_processed(engine, [c.id for c in charges], timeout=90)
        assert len(done) == len(charges), "every command applied or rejected once"
        assert all(row["status"] == "applied" for row in done.values())
        async with engine.connect() as conn:
            counts = (
                await conn.execute(
                    text(
                        "SELECT command_id, count(*) FROM ledger_transactions "
                        "WHERE command_id = ANY(CAST(:ids AS uuid[])) GROUP BY command_id"
                    ),
                    {"ids": [c.id for c in charges]},
                )
            ).all()
            outbox_ids = {
                str(row[0])
                for row in await conn.execute(
                    text("SELECT event_id FROM outbox WHERE command_id = ANY(CAST(:ids AS uuid[]))"),
                    {"ids": [c.id for c in charges]},
                )
            }
        assert len(counts) == len(charges) and {n for _, n in counts} == {1}
        assert len(outbox_ids) == 2 * len(charges)
        wanted = {str(c.id) for c in charges}
        published = await consume_all(
            isolated,
            isolated.events_topic,
            lambda seen: outbox_ids <= {e["id"] for e in seen},
        )
        unique = {e["id"]: e for e in published if e.get("commandId") in wanted}
        assert set(unique) == outbox_ids, "every applied command's events were published"
        assert await reconcile(engine, require_events_sent=True) == []
        log = worker.log()
        sample = charges[-1]
        assert str(sample.correlation_id) in log, "worker logs carry the correlation id"
    finally:
        worker.stop()
        relay.stop()


async def test_standby_relay_takes_over_and_keeps_per_user_order(
    settings, engine, worker, relay, events, producer, user_id
):
    standby = ChildProcess("relay", settings, name="relay-b").start()
    try:
        await asyncio.sleep(1.0)
        relay.kill()  # the active relay dies; the standby must take the lock
        funding = grant(user_id, 50)
        charges = [charge(user_id) for _ in range(40)]
        await publish(producer, settings, funding, *charges)
        started = time.monotonic()
        changed = await events.wait_for(
            lambda e: e.get("userId") == user_id and e["type"] == "balance.changed",
            count=41,
            timeout=30,
        )
        assert len(changed) == 41, "events still flow after the active relay died"
        assert time.monotonic() - started < 15
        unique = list({e["id"]: e for e in changed}.values())
        assert [e["payload"]["available"] for e in unique] == list(range(50, 9, -1))
    finally:
        relay.start()
        await asyncio.sleep(0.5)
        standby.stop()
