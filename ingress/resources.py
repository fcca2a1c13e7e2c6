"""The ingress's long-lived clients, built once at start-up and kept on app state."""

import contextlib
import logging
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.stripe.client import StripeProvider
from ingress.db_metrics import count_round_trips
from ingress.gateway import CommandGateway
from ingress.idempotency import ReplayStore, in_flight_seconds
from ingress.live import BalanceHub
from ingress.rate_limits import WindowCounter
from ingress.readiness import Readiness
from ingress.reply_seal import ReplySeal
from ingress.reply_waiters import ReplyWaiters
from services.db import ReadPool, UnitOfWork, make_engine
from services.kafka_security import kafka_client_options
from services.kafka_start import KafkaUnreachable, start_kafka_client
from services.settings import Settings

log = logging.getLogger("pika.ingress")


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    producer: AIOKafkaProducer
    gateway: CommandGateway
    payments: StripeProvider
    hub: BalanceHub
    replies: ReplayStore
    reads: ReadPool
    window_counter: WindowCounter
    readiness: Readiness = field(default_factory=Readiness)

    @property
    def uow(self) -> UnitOfWork:
        """The database as the use cases take it (they choose their transactions)."""
        return UnitOfWork(self.engine, self.reads)

    @classmethod
    async def open(cls, settings: Settings) -> "Resources":
        engine = make_engine(settings)
        count_round_trips(engine)
        redis = Redis.from_url(
            settings.redis_url, socket_timeout=2, socket_connect_timeout=2, decode_responses=False
        )
        producer = AIOKafkaProducer(
            **kafka_client_options(settings),
            acks="all",
            linger_ms=1,
            metadata_max_age_ms=30_000,
            request_timeout_ms=10_000,
        )
        try:
            # The broker may start after us; a producer that never started must not serve.
            await start_kafka_client(producer, "ingress producer", settings)
        except KafkaUnreachable as error:
            log.error("%s", error.message)
            await redis.aclose()
            await engine.dispose()
            raise
        reads = await ReadPool.open(settings)
        waiters = ReplyWaiters(settings)
        await waiters.start()
        gateway = CommandGateway(producer, engine, redis, settings, waiters, reads)
        hub = BalanceHub(settings)
        await hub.start()
        replies = ReplayStore(
            redis,
            ReplySeal(settings.stripe_secret_key),
            reply_ttl=settings.idempotency_ttl_seconds,
            in_flight_ttl=in_flight_seconds(settings.payment_reply_timeout),
        )
        return cls(
            settings, engine, redis, producer, gateway, StripeProvider(settings), hub, replies, reads,
            WindowCounter(redis),
        )

    async def close(self) -> None:
        await self.hub.stop()
        await self.gateway.waiters.stop()
        with contextlib.suppress(Exception):
            await self.producer.stop()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        await self.engine.dispose()
        with contextlib.suppress(Exception):
            await self.reads.close()
