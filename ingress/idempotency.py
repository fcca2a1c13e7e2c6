"""HTTP idempotency, the first of the layers of docs/architecture.md ("Idempotency"):
`Idempotency-Key` on POST.

The first response is stored in Redis for IDEMPOTENCY_TTL and replayed to a retry
with the same key and body; the same key with another body is refused (422 PAY012);
a retry while the first request is still running gets 409 PAY013. Keys are scoped to
the caller and route. The command id is derived from the same scope and key, so even
if Redis lost the key the ledger would still apply the command once.
Without Redis a keyed POST answers 503 rather than risk a double effect.

The in-flight marker lives only as long as a request can (`in_flight_seconds`): a
request that died without clearing it (process killed, pod evicted) blocks retries of
its key for seconds, not for the reply's day. Stored replies are sealed (ReplySeal):
a purchase's reply carries a PaymentIntent client secret.
"""

import contextlib
import hashlib
import json
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ingress.gateway import Reply, error_reply
from ingress.reply_seal import ReplySeal
from services.errors import (
    DependencyUnavailable,
    IdempotencyKeyReused,
    IdempotencyRequestInFlight,
    PaymentError,
    ValidationFailed,
)

NAMESPACE = uuid.UUID("2f1d4a8e-9c55-4c1e-8a51-69646d706b79")
MAX_KEY_LENGTH = 255
# Beyond PAYMENT_REPLY_TIMEOUT: the Redis round trips, the publish and the reply.
IN_FLIGHT_MARGIN_SECONDS = 10
REPLACE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def in_flight_seconds(reply_timeout: float) -> int:
    """How long a claimed key answers 409: the longest a live request waits, plus a margin.

    A request still running after that is protected by its command id (the ledger
    applies it once) and by Stripe's idempotency key, so a retry that runs meanwhile
    cannot apply twice; it merely is not told 409.
    """
    return math.ceil(reply_timeout) + IN_FLIGHT_MARGIN_SECONDS


@dataclass(frozen=True)
class ReplayStore:
    """Where replies wait for retries, and for how long."""

    redis: Redis
    seal: ReplySeal
    reply_ttl: int
    in_flight_ttl: int


def fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def idempotency_scope(subject: str, method: str, path: str) -> str:
    """Keys are the caller's own, per route: one caller cannot replay another's reply."""
    return f"{subject}:{method}:{path}"


def redis_key_of(scope: str, key: str) -> str:
    return "pika:idem:" + hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()


async def claim(redis: Redis, redis_key: str, body_fingerprint: str, in_flight_ttl: int) -> bool:
    """Mark a key in flight unless it is already known; True when this caller owns it."""
    return bool(await redis.set(redis_key, _in_flight(body_fingerprint), nx=True, ex=in_flight_ttl))


def _in_flight(body_fingerprint: str) -> str:
    return json.dumps({"state": "pending", "fp": body_fingerprint})


async def _claim_again(
    redis: Redis, redis_key: str, seen: bytes | str | None, body_fingerprint: str, in_flight_ttl: int
) -> bool:
    if seen is None:
        return await claim(redis, redis_key, body_fingerprint, in_flight_ttl)
    replaced = await redis.eval(
        REPLACE_IF_UNCHANGED, 1, redis_key, seen, _in_flight(body_fingerprint), in_flight_ttl
    )
    return bool(replaced)


async def idempotent(
    store: ReplayStore,
    *,
    key: str | None,
    scope: str,
    body: Any,
    action: Callable[[uuid.UUID], Awaitable[Reply]],
) -> Reply:
    """Run `action(command_id)` at most once per (scope, key); replay its reply."""
    if key is None:
        return await action(uuid.uuid4())
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    command_id = uuid.uuid5(NAMESPACE, f"{scope}\n{key}")
    redis_key = redis_key_of(scope, key)
    body_fingerprint = fingerprint(body)
    redis = store.redis
    try:
        claimed = await claim(redis, redis_key, body_fingerprint, store.in_flight_ttl)
        if not claimed:
            raw = await redis.get(redis_key)
            replay = None if raw is None else _replay(store.seal, json.loads(raw), body_fingerprint)
            if replay is not None:
                return replay
            # Expired meanwhile, or sealed under a rotated key: run again under the same
            # command id, claiming the key only if nobody else has since.
            if not await _claim_again(redis, redis_key, raw, body_fingerprint, store.in_flight_ttl):
                raise IdempotencyRequestInFlight()
    except RedisError as error:
        raise DependencyUnavailable(
            "idempotency store (redis) is unavailable; nothing was done, retry later"
        ) from error
    try:
        reply = await action(command_id)
    except PaymentError as error:
        if error.status >= 500:
            await _forget(redis, redis_key)
            raise
        reply = error_reply(error)
    except BaseException:
        await _forget(redis, redis_key)
        raise
    sealed = store.seal.seal({"status": reply.status, "body": reply.body, "headers": reply.headers})
    stored = {"state": "done", "fp": body_fingerprint, "sealed": sealed}
    # If this fails the command id still protects the ledger; the reply just won't replay.
    with contextlib.suppress(RedisError):
        await redis.set(redis_key, json.dumps(stored), ex=store.reply_ttl)
    return reply


def _replay(seal: ReplySeal, stored: dict[str, Any], body_fingerprint: str) -> Reply | None:
    """The stored reply again; None when it cannot be opened (treated as missing)."""
    if stored.get("fp") != body_fingerprint:
        raise IdempotencyKeyReused()
    if stored.get("state") != "done":
        raise IdempotencyRequestInFlight()
    opened = seal.open(str(stored.get("sealed", "")))
    if not isinstance(opened, dict):
        return None
    headers = {**opened.get("headers", {}), "Idempotent-Replayed": "true"}
    return Reply(int(opened["status"]), opened["body"], headers)


async def _forget(redis: Redis, redis_key: str) -> None:
    with contextlib.suppress(RedisError):
        await redis.delete(redis_key)
