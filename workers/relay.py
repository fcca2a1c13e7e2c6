"""Outbox relay: publishes committed events to Kafka in commit order, then marks them sent.

One relay is active at a time: it holds a session-level Postgres advisory lock on its
own connection; replicas wait on the lock and the first to get it takes over within
`STANDBY_POLL` seconds of the leader's death (Postgres drops the lock with the
connection). Rows are read in id order, which per user is commit order because a
user's account row lock serialises their transactions. A crash between publish and
mark-sent republishes those rows: consumers dedupe by event id.

It uses one raw asyncpg connection rather than the SQLAlchemy pool because the
advisory lock and LISTEN both belong to a single long-lived session.
"""

import asyncio
import contextlib
import logging
import time

import asyncpg
from aiokafka import AIOKafkaProducer

from services.kafka_security import kafka_client_options
from services.kafka_start import start_kafka_client
from services.ledger import outbox_store
from services.metrics import OUTBOX_LAG, OUTBOX_PUBLISHED
from services.settings import Settings
from services.tracing import TRACEPARENT, links_to, producer_span, tracing_enabled

log = logging.getLogger("pika.relay")
LOCK_KEY = 0x70696B61  # "pika"
STANDBY_POLL = 1.0
# What a lost or restarting Postgres raises here. InternalClientError ("cannot switch
# to state 12; another operation is in progress") derives from neither PostgresError
# nor InterfaceError; it comes when the server drops the session mid-statement, e.g.
# during a restart (seen in the fault suite, scenario b: it killed the relay).
CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **kafka_client_options(settings),
        acks="all",
        linger_ms=2,
        max_batch_size=1024 * 1024,
        metadata_max_age_ms=30_000,
    )


def event_headers(row: asyncpg.Record) -> list[tuple[str, bytes]]:
    """`event-type`, and `traceparent` when the row kept its command's trace context."""
    headers = [("event-type", row["event_type"].encode())]
    if row["trace_context"]:
        headers.append((TRACEPARENT, row["trace_context"].encode()))
    return headers


async def publish_rows(producer: AIOKafkaProducer, rows: list[asyncpg.Record]) -> None:
    """Send rows pipelined, then wait for every acknowledgement; with tracing on, inside
    a `publish events` span linked to each row's trace context."""
    if not tracing_enabled():
        await _send_all(producer, rows)
        return
    with producer_span("publish events", len(rows), links_to([row["trace_context"] for row in rows])):
        await _send_all(producer, rows)


async def _send_all(producer: AIOKafkaProducer, rows: list[asyncpg.Record]) -> None:
    futures = [
        await producer.send(
            row["topic"],
            value=row["payload"].encode(),
            key=row["key"].encode(),
            headers=event_headers(row),
        )
        for row in rows
    ]
    await asyncio.gather(*futures)


async def relay_once(
    conn: asyncpg.Connection, producer: AIOKafkaProducer, batch_size: int
) -> int:
    rows = await outbox_store.fetch_unsent(conn, batch_size)
    if not rows:
        OUTBOX_LAG.set(0)
        return 0
    OUTBOX_LAG.set(float(rows[0]["age"]))
    await publish_rows(producer, rows)
    await outbox_store.mark_sent(conn, [row["id"] for row in rows])
    OUTBOX_PUBLISHED.inc(len(rows))
    return len(rows)


async def run_relay(settings: Settings, stop: asyncio.Event) -> None:
    """Relay until `stop` is set; survives database and broker outages by reconnecting."""
    producer = make_producer(settings)
    await start_kafka_client(producer, "relay", settings)
    try:
        while not stop.is_set():
            try:
                await _lead(settings, producer, stop)
            except CONNECTION_ERRORS as error:
                log.warning("relay lost its connection (%s); reconnecting", type(error).__name__)
                await _sleep_unless(stop, 1.0)
    finally:
        await producer.stop()


async def _lead(settings: Settings, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
    conn = await asyncpg.connect(settings.plain_database_url)
    wake = asyncio.Event()
    try:
        while not await outbox_store.try_relay_lock(conn, LOCK_KEY):
            if await _sleep_unless(stop, STANDBY_POLL):
                return
        log.info("relay is the active replica")
        await conn.add_listener(outbox_store.CHANNEL, lambda *_: wake.set())
        while not stop.is_set():
            started = time.perf_counter()
            sent = await relay_once(conn, producer, settings.relay_batch_size)
            if sent:
                log.debug("relayed %d events in %.3fs", sent, time.perf_counter() - started)
                continue
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), settings.relay_poll_interval * 10)
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep; True when `stop` was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
