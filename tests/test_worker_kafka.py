"""The ledger worker and relay against the real broker and database."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from schemas.commands import ChargeCredits, ChargePayload, GrantCredits, GrantPayload
from services.ledger.invariant_queries import reconcile
from tests.conftest import publish, wait_processed


def grant(user: str, credits: int) -> GrantCredits:
    return GrantCredits(user_id=user, payload=GrantPayload(credits=credits, reason="test"))


def charge(user: str, credits: int, reference: str = "booking-1") -> ChargeCredits:
    return ChargeCredits(user_id=user, payload=ChargePayload(credits=credits, reference=reference))


async def test_charge_published_to_kafka_is_applied_and_announced(
    settings, engine, worker, events, producer, user_id
):
    funding, spend = grant(user_id, 10), charge(user_id, 4)
    await publish(producer, settings, funding, spend)
    done = await wait_processed(engine, [funding.id, spend.id])
    assert done[spend.id]["status"] == "applied"
    assert done[spend.id]["result"]["balance"] == {"available": 6, "held": 0, "total": 6}
    announced = await events.wait_for(lambda e: e.get("commandId") == str(spend.id), count=2)
    types = sorted(e["type"] for e in announced)
    assert types == ["balance.changed", "credits.charged"]
    changed = next(e for e in announced if e["type"] == "balance.changed")
    assert changed["userId"] == user_id and changed["_key"] == user_id
    assert changed["payload"]["available"] == 6 and changed["payload"]["delta"] == -4


async def test_rejected_charge_gets_pay001_and_a_rejected_event(
    settings, engine, worker, events, producer, user_id
):
    spend = charge(user_id, 5)
    await publish(producer, settings, spend)
    done = await wait_processed(engine, [spend.id])
    assert done[spend.id]["status"] == "rejected"
    assert done[spend.id]["error_code"] == "PAY001"
    rejected = await events.wait_for(lambda e: e.get("commandId") == str(spend.id))
    assert rejected[0]["type"] == "credits.charge.rejected"
    assert rejected[0]["payload"]["code"] == "PAY001"


async def test_poison_message_goes_to_dlq_and_the_next_command_applies(
    settings, engine, worker, producer, user_id
):
    consumer = AIOKafkaConsumer(
        settings.commands_dlq_topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        marker = uuid.uuid4().hex
        poison = [
            b"{not json " + marker.encode(),
            f'{{"type": "credits.unknown", "marker": "{marker}"}}'.encode(),
            grant(user_id, 3).model_dump_json().replace('"schemaVersion":1', '"schemaVersion":9')
            .replace('"reason":"test"', f'"reason":"{marker}"').encode(),
            grant(user_id, 3).model_dump_json().replace(user_id, "x" * 10_000)
            .replace('"reason":"test"', f'"reason":"{marker}"').encode(),
        ]
        for value in poison:
            await producer.send_and_wait(settings.commands_topic, value=value, key=user_id.encode())
        good = grant(user_id, 7)
        await publish(producer, settings, good)
        done = await wait_processed(engine, [good.id])
        assert done[good.id]["status"] == "applied"
        reasons: dict[bytes, str] = {}
        deadline = asyncio.get_running_loop().time() + 20
        while len(reasons) < len(poison) and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    if marker.encode() in record.value:
                        reasons[record.value] = dict(record.headers)["x-dlq-reason"].decode()
        assert set(reasons) == set(poison), "every poison message is kept byte for byte"
        assert reasons[poison[0]] == "malformed JSON"
        assert "type" in reasons[poison[1]]
        assert "schemaVersion" in reasons[poison[2]]
        assert "userId" in reasons[poison[3]]
    finally:
        await consumer.stop()


async def test_every_command_delivered_twice_changes_nothing_more(
    settings, engine, worker, events, producer, user_id
):
    once_user = f"{user_id}-once"
    script = [("grant", 20), ("charge", 3), ("charge", 4)]

    def build(user: str) -> list:
        return [grant(user, n) if kind == "grant" else charge(user, n, f"b-{i}")
                for i, (kind, n) in enumerate(script)]

    reference, commands = build(once_user), build(user_id)
    await publish(producer, settings, *reference)
    await publish(producer, settings, *commands)
    # Redelivery, e.g. producer retries, the second time in reverse order.
    await publish(producer, settings, *reversed(commands))
    await wait_processed(engine, [c.id for c in commands + reference])
    await asyncio.sleep(1.0)  # let the duplicates pass through the worker
    async with engine.connect() as conn:
        available = await conn.scalar(
            text("SELECT available FROM accounts WHERE user_id = :u"), {"u": user_id}
        )
        transactions = await conn.scalar(
            text("SELECT count(*) FROM ledger_transactions WHERE user_id = :u"), {"u": user_id}
        )
    assert available == 13
    assert transactions == 3
    async with engine.connect() as conn:
        remaining = {
            user: sorted(
                (
                    await conn.execute(
                        text("SELECT remaining FROM credit_batches WHERE user_id = :u"), {"u": user}
                    )
                ).scalars()
            )
            for user in (user_id, once_user)
        }
    assert remaining[user_id] == remaining[once_user] == [13], "same end state as once"
    announced = await events.wait_for(lambda e: e.get("userId") == user_id, count=6)
    assert len({e["id"] for e in announced}) == 6
    assert await reconcile(engine) == []
