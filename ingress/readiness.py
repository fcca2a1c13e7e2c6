"""Readiness of the ingress's backends, checked at most once a second per replica.

`/payment/ready` is public (the kubelet calls it without a token) and exempt from rate
limits, and each check costs a Postgres connection, a Redis round trip and a Kafka
metadata request. Answers are therefore shared: a check run in the last
READY_CACHE_SECONDS is reused, and concurrent callers wait for the one check under
way instead of starting their own, so a flood costs at most one check a second.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text

from services.metrics import READINESS_CHECKS

READY_CACHE_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 3


class Readiness:
    """The last readiness answer and when it was taken."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._taken = float("-inf")
        self._answer: dict[str, str] = {}

    async def checks(self, resources: Any) -> dict[str, str]:
        """`{backend: "ok" | "unavailable: <error>"}`, at most READY_CACHE_SECONDS old."""
        async with self._lock:
            if time.monotonic() - self._taken >= READY_CACHE_SECONDS:
                self._answer = await _check_all(resources)
                self._taken = time.monotonic()
            return dict(self._answer)


async def _check_all(res: Any) -> dict[str, str]:
    READINESS_CHECKS.inc()

    async def postgres() -> None:
        async with res.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def redis() -> None:
        await res.redis.ping()

    async def kafka() -> None:
        await res.producer.client.fetch_all_metadata()

    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "postgres": postgres, "redis": redis, "kafka": kafka,
    }
    outcomes = await asyncio.gather(
        *(asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS) for check in checks.values()),
        return_exceptions=True,
    )
    return {
        name: "ok" if outcome is None else f"unavailable: {type(outcome).__name__}"
        for name, outcome in zip(checks, outcomes, strict=True)
    }
