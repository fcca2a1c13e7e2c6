"""Readiness of the ingress's backends, checked at most once a second per replica.

`/payment/ready` is public (the kubelet calls it without a token) and exempt from rate
limits, and each check costs a Postgres connection, a Redis round trip and a Kafka
metadata request. Answers are therefore shared: a check run in the last
READY_CACHE_SECONDS is reused, and concurrent callers wait for the one check under
way instead of starting their own, so a flood costs at most one check a second.

What each backend's failure does to readiness (docs/api.md, "Routes", health row):
* Postgres or Kafka down: not ready (503). Without Postgres nothing is read; without
  Kafka nothing is written. The pod leaves the Service until they answer.
* Redis down: still ready (200, `"status": "degraded"`, `"redis": "down"`). Reads
  work without Redis (rate limits fail open) and only a POST with an Idempotency-Key
  answers 503 PAY015. Redis is shared by every replica, so failing readiness on it
  would empty the Service on one Redis blip and take the reads down with the writes.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from services.db import ping_database
from services.metrics import READINESS_CHECKS

READY_CACHE_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 3
# Backends whose failure takes the pod out of the Service; the others only degrade it.
REQUIRED = frozenset({"postgres", "kafka"})


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
        await ping_database(res.engine)

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


def verdict(checks: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of `/payment/ready` for these check results."""
    if any(checks[name] != "ok" for name in REQUIRED):
        return 503, {"status": "unavailable", "checks": checks}
    down = sorted(name for name, outcome in checks.items() if outcome != "ok")
    if down:
        return 200, {"status": "degraded", **dict.fromkeys(down, "down"), "checks": checks}
    return 200, {"status": "ok", "checks": checks}
