"""Process entry points of the workers: run until SIGTERM/SIGINT, then stop cleanly."""

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.db import make_engine
from services.kafka_security import kafka_broker
from services.settings import Settings
from workers.ledger import register_ledger_worker
from workers.mailer import Mailer
from workers.notify import register_notify_consumer
from workers.probes import ProbeServer, ReadyCheck
from workers.readiness import GroupMembership, consumer_ready, database_ready
from workers.relay import run_relay

log = logging.getLogger("pika.worker")


def stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


@asynccontextmanager
async def probes(settings: Settings, ready: ReadyCheck) -> AsyncIterator[None]:
    """/health, /ready and /metrics on METRICS_HOST:METRICS_PORT while the process runs
    (nothing when the port is 0). Started before the broker so /health answers during
    a slow start; stopped last so /metrics is scraped until the end."""
    if not settings.metrics_port:
        yield
        return
    server = ProbeServer(settings.metrics_host, settings.metrics_port, ready)
    await server.start()
    try:
        yield
    finally:
        await server.stop()


async def run_ledger_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    stop = stop or stop_on_signals()
    engine = make_engine(settings, pool_size=2, pre_ping=False)
    membership = GroupMembership()
    broker = kafka_broker(settings, logger=log, log_level=logging.DEBUG)
    register_ledger_worker(broker, engine, settings, listener=membership)
    try:
        async with probes(settings, consumer_ready(membership, engine)):
            await broker.start()
            log.info("ledger worker consuming %s and %s", settings.commands_topic,
                     settings.internal_commands_topic)
            try:
                await stop.wait()
            finally:
                await broker.stop()
    finally:
        await engine.dispose()


async def run_relay_process(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The relay holds its own asyncpg connection; readiness pings through a one-
    connection pool of its own so a probe never waits behind a publish."""
    stop = stop or stop_on_signals()
    engine = make_engine(settings, pool_size=1)
    try:
        async with probes(settings, database_ready(engine)):
            log.info("outbox relay publishing to %s", settings.events_topic)
            await run_relay(settings, stop)
    finally:
        await engine.dispose()


async def run_notify_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Consumer and mailer in one process. On stop the mailer first finishes the sends
    it has started (at most SMTP_TIMEOUT), so a deploy does not cut an SMTP exchange in
    half and resend it after the lease; then the consumer stops (the mailer's dead
    letters go through its broker)."""
    stop = stop or stop_on_signals()
    engine = make_engine(settings, pool_size=2)
    membership = GroupMembership()
    broker = kafka_broker(settings, logger=log, log_level=logging.DEBUG)
    mailer = Mailer(broker, engine, settings)
    register_notify_consumer(broker, engine, settings, mailer.wake.set, listener=membership)
    try:
        async with probes(settings, consumer_ready(membership, engine)):
            await broker.start()
            sending = asyncio.create_task(mailer.run(stop))
            log.info("notify worker consuming %s, sending via %s:%s", settings.events_topic,
                     settings.smtp_host, settings.smtp_port)
            try:
                await stop.wait()
            finally:
                try:
                    await asyncio.wait_for(sending, settings.smtp_timeout + 5)
                except TimeoutError:
                    log.warning(
                        "mailer did not finish in time; its leased emails go out after the lease"
                    )
                await broker.stop()
    finally:
        await engine.dispose()
