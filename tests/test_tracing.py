"""Tracing: one trace from an HTTP request through the command, the worker and the
outbox to the event record (services/tracing.py, docs/operations.md "Tracing").

The traced processes print their spans with the console exporter, one JSON span a
line, into their log files; the test reads them there.
"""

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from sqlalchemy import text

from ingress.gateway import CommandGateway
from ops.migrate import migrate
from ops.topics import provision_topics
from schemas.commands import ChargeCredits, ChargePayload, GrantCredits, GrantPayload
from services.settings import Settings
from services.tracing import (
    header_traceparent,
    span_context,
    trace_headers,
    tracing_wanted,
    valid_traceparent,
)
from tests.conftest import ChildProcess, Ingress, _drop_database, auth, start_ingress
from workers.relay import event_headers

TRACE_ENV = {"OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "100"}


def new_traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def spans_in(child: ChildProcess) -> list[dict[str, Any]]:
    found = []
    for line in child.log().splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record.get("context"), dict) and "trace_id" in record["context"]:
            found.append(record)
    return found


def in_trace(span: dict[str, Any], trace_id: str) -> bool:
    return span["context"]["trace_id"] == f"0x{trace_id}"


def links_trace(span: dict[str, Any], trace_id: str) -> bool:
    return any(link["context"]["trace_id"] == f"0x{trace_id}" for link in span.get("links") or [])


async def wait_for_spans(
    child: ChildProcess, wanted: Callable[[dict[str, Any]], bool], timeout: float = 20
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [span for span in spans_in(child) if wanted(span)]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def event_header(settings: Settings, user: str, event_type: str, timeout: float = 30) -> str | None:
    """The `traceparent` header of the first `event_type` event of `user` on the events topic."""
    consumer = AIOKafkaConsumer(
        settings.events_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    if event.get("userId") == user and event.get("type") == event_type:
                        return header_traceparent(record.headers) or ""
        return None
    finally:
        await consumer.stop()


@pytest.fixture
async def traced(
    services: Any, settings: Settings
) -> AsyncIterator[tuple[Settings, Ingress, ChildProcess, ChildProcess]]:
    """Ingress, worker and relay with tracing on, on a database and topics of their own:
    one relay per database publishes (an advisory lock), so only there is the relay
    this test reads the spans of surely the active one."""
    name = f"{services.database_name}_trace_{uuid.uuid4().hex[:6]}"
    own = settings.model_copy(update={
        "database_url": f"{services.database_admin_url.rsplit('/', 1)[0]}/{name}",
        "topic_prefix": f"trace-{uuid.uuid4().hex[:6]}-",
    })
    await asyncio.to_thread(migrate, own)
    await provision_topics(own)
    worker = ChildProcess("worker", own, name="worker-traced")
    relay = ChildProcess("relay", own, name="relay-traced")
    started = []
    try:
        for child in (worker, relay):
            child.env.update(TRACE_ENV)
            started.append(child.start())
        ingress = start_ingress(own, "ingress-traced", env=TRACE_ENV)
        started.append(ingress.process)
        yield own, ingress, worker, relay
    finally:
        for child in started:
            child.stop()
        await _drop_database(services.database_admin_url, name)


async def test_one_trace_from_http_request_to_event_record(traced, user_id):
    own, ingress, worker, relay = traced
    trace_id, traceparent = new_traceparent()
    async with httpx.AsyncClient(base_url=ingress.url, timeout=30) as http:
        granted = await http.post(
            "/payment/credits/grant",
            json={"userId": user_id, "credits": 7, "reason": "goodwill"},
            headers={**auth("ops-admin", "admin"), "traceparent": traceparent},
        )
    assert granted.status_code == 200, granted.text
    command_id = granted.json()["commandId"]

    # The event record goes on in the caller's trace.
    header = await event_header(own, user_id, "balance.changed")
    assert header, f"no traceparent on the balance.changed record ({header!r})"
    assert header.split("-")[1] == trace_id

    # The ingress's request span continues the caller's trace.
    served = await wait_for_spans(ingress.process, lambda s: in_trace(s, trace_id))
    assert served and served[0]["resource"]["attributes"]["service.name"] == "pika-payment-ingress"
    # The worker: the command's span in that trace, the batch span linked to it.
    applied = await wait_for_spans(
        worker, lambda s: s["name"] == "apply command" and in_trace(s, trace_id)
    )
    assert applied, spans_in(worker)
    assert applied[0]["attributes"]["pika.command.id"] == command_id
    assert applied[0]["attributes"]["pika.command.status"] == "applied"
    assert applied[0]["resource"]["attributes"]["service.name"] == "pika-payment-worker"
    assert await wait_for_spans(worker, lambda s: s["name"] == "apply batch" and links_trace(s, trace_id))
    # The event carries the worker's command span as its parent.
    assert header.split("-")[2] == applied[0]["context"]["span_id"].removeprefix("0x")

    # The relay's publish span links to the trace (the only relay of this database).
    published = await wait_for_spans(
        relay, lambda s: s["name"] == "publish events" and links_trace(s, trace_id)
    )
    assert published, spans_in(relay)
    assert published[0]["resource"]["attributes"]["service.name"] == "pika-payment-relay"


async def test_untraced_stack_passes_a_commands_traceparent_to_its_events(
    settings, worker, relay, producer, user_id
):
    """Tracing off: no spans, but a traceparent a platform producer sent with a command
    reaches the command's events unchanged."""
    _trace_id, traceparent = new_traceparent()
    command = ChargeCredits(user_id=user_id, payload=ChargePayload(credits=1, reference="booking-trace"))
    await producer.send_and_wait(
        settings.commands_topic, value=command.model_dump_json().encode(), key=user_id.encode(),
        headers=[("traceparent", traceparent.encode())],
    )
    header = await event_header(settings, user_id, "credits.charge.rejected")
    assert header == traceparent
    assert not spans_in(worker)


async def test_a_malformed_traceparent_from_a_producer_is_dropped_not_stored(
    settings, engine, worker, relay, producer, user_id
):
    """A producer's `traceparent` that is not W3C's (here 10 kB of text) would otherwise be
    stored in the outbox and copied onto every event of the command: it is dropped, and
    the command is applied as if it had come without one."""
    command = ChargeCredits(user_id=user_id, payload=ChargePayload(credits=1, reference="booking-junk"))
    await producer.send_and_wait(
        settings.commands_topic, value=command.model_dump_json().encode(), key=user_id.encode(),
        headers=[("traceparent", b"00-" + b"a" * 10_000)],
    )
    assert await event_header(settings, user_id, "credits.charge.rejected") == ""
    async with engine.connect() as conn:
        stored = (await conn.execute(
            text("SELECT trace_context FROM outbox WHERE command_id = :id"), {"id": command.id}
        )).scalars().all()
    assert stored and set(stored) == {None}


def test_only_a_w3c_traceparent_is_carried():
    _trace_id, traceparent = new_traceparent()
    assert valid_traceparent(traceparent.encode()) == traceparent
    for bad in (b"", b"garbage", traceparent.upper().encode(), b"01" + traceparent[2:].encode(),
                b"00-" + b"0" * 32 + b"-" + b"1" * 16 + b"-01", traceparent.encode() + b"x"):
        assert valid_traceparent(bad) is None, bad


class Recorder:
    """Stands in for the producer and Redis of the gateway."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, **kwargs: Any) -> None:
        self.sent.append(kwargs)

    async def set(self, *args: Any, **kwargs: Any) -> None:
        return None


async def test_tracing_off_publishes_commands_without_trace_headers(settings):
    recorder = Recorder()
    # `publish` neither waits for a reply nor reads: no reply waiters, no engine.
    gateway = CommandGateway(recorder, None, recorder, settings, None)  # type: ignore[arg-type]
    await gateway.publish(GrantCredits(user_id="u-1", payload=GrantPayload(credits=1, reason="fund")))
    assert trace_headers() == []
    assert [key for key, _ in recorder.sent[0]["headers"]] == ["content-type"]


def test_tracing_is_on_only_with_an_exporter_named():
    assert not tracing_wanted({})
    assert not tracing_wanted({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_wanted({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})
    assert tracing_wanted({"OTEL_TRACES_EXPORTER": "otlp"})
    assert tracing_wanted({"OTEL_TRACES_EXPORTER": "console,otlp"})


def test_trace_context_parsing_and_event_headers():
    trace_id, traceparent = new_traceparent()
    context = span_context(traceparent)
    assert context is not None and f"{context.trace_id:032x}" == trace_id
    assert span_context("garbage") is None and span_context(None) is None
    assert header_traceparent([("content-type", b"x"), ("traceparent", traceparent.encode())]) == traceparent
    assert event_headers({"event_type": "balance.changed", "trace_context": traceparent}) == [  # type: ignore[arg-type]
        ("event-type", b"balance.changed"), ("traceparent", traceparent.encode()),
    ]
    assert event_headers({"event_type": "x", "trace_context": None}) == [("event-type", b"x")]  # type: ignore[arg-type]
