"""HTTP writes that wait are woken by the ledger's NOTIFY, not by polling (ingress.reply_waiters).

The gateway tests run the real listener and read pool on the test database; what the
worker would do (store an answer, notify its id) is done here directly, so each test
controls whether a notification comes, comes for another id, or is lost. The safety
re-check is stretched to 30 s, so an answer within the test's time can only come from
a wake-up. One test goes through the real ingress and ledger worker.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ingress import gateway as gateway_module
from ingress.gateway import CommandGateway
from ingress.reply_waiters import ReplyWaiters
from schemas.commands import ChargeCredits, ChargePayload, CommandEnvelope, command_fingerprint
from services.db import ReadPool
from services.ledger import reply_store
from services.settings import Settings
from tests.conftest import Ingress, auth

STORE_ANSWER = text(
    "INSERT INTO processed_commands (command_id, type, user_id, status, result, fingerprint) "
    "VALUES (:id, :type, :user_id, 'applied', CAST(:result AS jsonb), :fingerprint)"
)


FORGET_ANSWERS = text("DELETE FROM processed_commands WHERE command_id = ANY(CAST(:ids AS uuid[]))")


class ScriptedGateway(CommandGateway):
    """The real gateway, whose `publish` runs `then` instead of going to Kafka, and which
    counts its reads of the stored answer."""

    def __init__(self, settings: Settings, waiters: ReplyWaiters, reads: ReadPool,
                 then: Callable[[CommandEnvelope], Awaitable[None]]) -> None:
        super().__init__(None, None, None, settings, waiters, reads)  # type: ignore[arg-type]
        self.then = then
        self.reads_of_answer = 0

    async def publish(self, command: CommandEnvelope, *_: Any, **__: Any) -> None:
        await self.then(command)

    async def stored(self, command_id: uuid.UUID) -> dict[str, Any] | None:
        self.reads_of_answer += 1
        return await super().stored(command_id)


def charge(user: str) -> ChargeCredits:
    return ChargeCredits(id=uuid.uuid4(), user_id=user, source="booking-service",
                         payload=ChargePayload(credits=1, reference="wake-test"))


class Answers:
    """What the worker's commit leaves: stored answers and (when asked) their NOTIFY. The
    rows are deleted after the test: they have no ledger rows or events, and `reconcile`
    in other tests on this database must not find them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.ids: list[uuid.UUID] = []

    async def store(self, command: CommandEnvelope, *, notify: bool) -> None:
        self.ids.append(command.id)
        async with self.engine.begin() as conn:
            await conn.execute(STORE_ANSWER, {
                "id": command.id, "type": command.type, "user_id": command.user_id,  # type: ignore[attr-defined]
                "result": json.dumps({"answer": str(command.id)}),
                "fingerprint": command_fingerprint(command),
            })
            if notify:
                await reply_store.notify_answered(conn, [command.id])


@pytest.fixture
async def answers(engine: AsyncEngine) -> AsyncIterator[Answers]:
    stored = Answers(engine)
    yield stored
    async with engine.begin() as conn:
        await conn.execute(FORGET_ANSWERS, {"ids": stored.ids})


@pytest.fixture
async def waiters(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ReplyWaiters]:
    monkeypatch.setattr(gateway_module, "SAFETY_RECHECK_SECONDS", 30.0)
    listening = ReplyWaiters(settings)
    await listening.start()
    await asyncio.wait_for(listening.connected.wait(), 10)
    yield listening
    await listening.stop()


@pytest.fixture
async def reads(settings: Settings) -> AsyncIterator[ReadPool]:
    pool = await ReadPool.open(settings, size=2)
    yield pool
    await pool.close()


async def test_a_waiting_write_is_answered_when_the_answer_is_notified(
    settings: Settings, answers: Answers, waiters: ReplyWaiters, reads: ReadPool
) -> None:
    async def worker_commits_soon(command: CommandEnvelope) -> None:
        asyncio.get_running_loop().call_later(
            0.3, lambda: asyncio.ensure_future(answers.store(command, notify=True))
        )

    gateway = ScriptedGateway(settings, waiters, reads, worker_commits_soon)
    command = charge(f"wake-{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    reply = await gateway.submit(command, timeout=10)
    assert reply.status == 200
    assert reply.body == {"commandId": str(command.id), "answer": str(command.id)}
    assert time.monotonic() - started < 3  # the safety re-check is 30 s away
    assert gateway.reads_of_answer == 2  # before publishing, and once woken: no polling


async def test_a_dropped_listener_still_answers_its_waiters(
    settings: Settings, answers: Answers, waiters: ReplyWaiters, reads: ReadPool
) -> None:
    """The answer is stored while the listener is down, its NOTIFY lost: the reconnect
    wakes every waiter, which reads its answer."""
    assert waiters.connection is not None
    listener_pid = waiters.connection.get_server_pid()

    async def answered_while_nobody_listens(command: CommandEnvelope) -> None:
        conn = await asyncpg.connect(settings.plain_database_url)
        try:
            await conn.execute("SELECT pg_terminate_backend($1)", listener_pid)
        finally:
            await conn.close()
        await answers.store(command, notify=False)

    gateway = ScriptedGateway(settings, waiters, reads, answered_while_nobody_listens)
    command = charge(f"drop-{uuid.uuid4().hex[:8]}")
    started = time.monotonic()
    reply = await gateway.submit(command, timeout=20)
    assert reply.status == 200, reply.body
    assert time.monotonic() - started < 10  # a reconnect, not the 30 s safety re-check
    await asyncio.wait_for(waiters.connected.wait(), 10)
    assert waiters.connection is not None and waiters.connection.get_server_pid() != listener_pid


async def test_no_answer_in_time_is_202_with_the_status_url(
    settings: Settings, waiters: ReplyWaiters, reads: ReadPool
) -> None:
    async def nobody_answers(_: CommandEnvelope) -> None:
        return None

    gateway = ScriptedGateway(settings, waiters, reads, nobody_answers)
    command = charge(f"slow-{uuid.uuid4().hex[:8]}")
    reply = await gateway.submit(command, timeout=0.5)
    location = f"/payment/commands/{command.id}"
    assert reply.status == 202
    assert reply.body == {"commandId": str(command.id), "status": "pending", "statusUrl": location}
    assert reply.headers == {"Location": location}
    assert gateway.reads_of_answer == 2  # before publishing, and once at the deadline
    assert command.id not in waiters.waiting  # the waiter is gone with its request


async def test_another_commands_answer_never_answers_this_one(
    settings: Settings, answers: Answers, waiters: ReplyWaiters, reads: ReadPool
) -> None:
    other = charge(f"other-{uuid.uuid4().hex[:8]}")

    async def only_the_other_is_answered(_: CommandEnvelope) -> None:
        await answers.store(other, notify=True)

    gateway = ScriptedGateway(settings, waiters, reads, only_the_other_is_answered)
    mine = charge(f"mine-{uuid.uuid4().hex[:8]}")
    with waiters.waiter(other.id) as other_woken:
        reply = await gateway.submit(mine, timeout=1.5)
        assert other_woken.is_set()  # the notification came, for the other id only
    assert reply.status == 202 and reply.body["commandId"] == str(mine.id)
    assert gateway.reads_of_answer == 2  # not woken by the other's notification


def test_notifications_fit_postgres_payload_limit() -> None:
    ids = [uuid.uuid4() for _ in range(1001)]
    payloads = reply_store.payloads(ids)
    assert all(len(p.encode()) < 8000 for p in payloads)
    assert [i for p in payloads for i in reply_store.command_ids_of(p)] == ids
    assert reply_store.command_ids_of("not-an-id," + str(ids[0])) == [ids[0]]


def _statements(metrics_url: str) -> float:
    text_ = httpx.get(metrics_url, timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text_) for s in f.samples
               if s.name == "payment_db_round_trips_total" and s.labels.get("kind") == "statement")


async def test_a_grant_over_http_waits_for_the_worker_with_three_queries(
    ingress: Ingress, http: httpx.AsyncClient
) -> None:
    """The real ingress and ledger worker: the answer (200, applied) within the request,
    and at most three statements: the status, the evidence, the status once woken."""
    user = f"grant-{uuid.uuid4().hex[:8]}"
    before = _statements(ingress.metrics_url)
    response = await http.post(
        "/payment/credits/grant", headers={**auth("wake-admin", "admin"),
                                           "Idempotency-Key": uuid.uuid4().hex},
        json={"userId": user, "credits": 3, "reason": "reply wake test"},
    )
    assert response.status_code == 200, response.text
    assert _statements(ingress.metrics_url) - before <= 3
