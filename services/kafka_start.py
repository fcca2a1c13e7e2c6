"""Start a Kafka client (producer, admin) that may boot before its broker, within a bound.

A client whose start failed is useless: a producer that never bootstrapped answers every
send with an error, so an ingress that kept serving with it would turn each write into
a 500. Starting is therefore retried (tenacity: fixed short waits, a total deadline) and
then given up with KafkaUnreachable, which stops the process: its supervisor (Kubernetes,
`make run`) restarts it, and until then the readiness probe sends no traffic.
"""

import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from tenacity import AsyncRetrying, RetryCallState, stop_after_delay, wait_fixed

from services.errors import DependencyUnavailable
from services.settings import Settings

log = logging.getLogger("pika.kafka")
START_RETRY_WAIT_SECONDS = 0.5


class Startable(Protocol):
    async def start(self) -> None: ...


class KafkaUnreachable(DependencyUnavailable):
    """No broker answered within the start-up deadline."""


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: kafka not reachable yet (%s), attempt %d",
            what, type(error).__name__, state.attempt_number,
        )

    return log_retry


async def start_kafka_client(client: Startable, what: str, settings: Settings) -> None:
    """`client.start()`, retried for KAFKA_STARTUP_TIMEOUT_SECONDS; KafkaUnreachable after."""
    bootstrap_servers = settings.kafka_bootstrap_servers
    within_seconds = settings.kafka_startup_timeout_seconds
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(within_seconds),
            wait=wait_fixed(START_RETRY_WAIT_SECONDS),
            before_sleep=_log_retry(what),
            reraise=True,
        ):
            with attempt:
                await client.start()
    except Exception as error:
        await _release(client)
        raise KafkaUnreachable(
            f"{what}: no Kafka broker at {bootstrap_servers} answered within "
            f"{within_seconds:g} s ({type(error).__name__}); stopping rather than running "
            "without it (check KAFKA_BOOTSTRAP_SERVERS, or raise KAFKA_STARTUP_TIMEOUT_SECONDS)",
            bootstrap_servers=bootstrap_servers,
        ) from error


async def _release(client: Startable) -> None:
    """Close the half-started client (producers `stop`, the admin client `close`), so the
    process exits without aiokafka's unclosed-client warnings burying the message."""
    closing = getattr(client, "stop", None) or getattr(client, "close", None)
    if closing is not None:
        with contextlib.suppress(Exception):
            await closing()
