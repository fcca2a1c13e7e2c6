"""HTTP idempotency (the first of its layers): `Idempotency-Key` on POST.

The first response is stored in Redis for IDEMPOTENCY_TTL and replayed to a retry
with the same key and body; the same key with another body is refused (422 PAY012);
a retry while the first request is still running gets 409 PAY013. Keys are scoped to
the caller and route. The command id is derived from the same scope and key, so even
if Redis lost the key the ledger would still apply the command once.
Without Redis a keyed POST answers 503 rather than risk a double effect.
"""

import contextlib
import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ingress.gateway import Reply, error_reply
from services.errors import (
    DependencyUnavailable,
    IdempotencyKeyReused,
    IdempotencyRequestInFlight,
    PaymentError,
    ValidationFailed,
)

NAMESPACE = uuid.UUID("2f1d4a8e-9c55-4c1e-8a51-69646d706b79")
MAX_KEY_LENGTH = 255


def _fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


async def idempotent(
    redis: Redis,
    *,
    key: str | None,
    scope: str,
    body: Any,
    ttl: int,
    action: Callable[[uuid.UUID], Awaitable[Reply]],
) -> Reply:
    """Run `action(command_id)` at most once per (scope, key); replay its reply."""
    if key is None:
        return await action(uuid.uuid4())
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationFailed(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    command_id = uuid.uuid5(NAMESPACE, f"{scope}\n{key}")
    redis_key = "pika:idem:" + hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
    fingerprint = _fingerprint(body)
    try:
        claimed = await redis.set(
            redis_key, json.dumps({"state": "pending", "fp": fingerprint}), nx=True, ex=ttl
        )
        if not claimed:
            raw = await redis.get(redis_key)
            if raw is not None:
                return _replay(json.loads(raw), fingerprint)
            claimed = await redis.set(
                redis_key, json.dumps({"state": "pending", "fp": fingerprint}), nx=True, ex=ttl
            )
            if not claimed:
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
    stored = {"state": "done", "fp": fingerprint, "status": reply.status, "body": reply.body,
              "headers": reply.headers}
    # If this fails the command id still protects the ledger; the reply just won't replay.
    with contextlib.suppress(RedisError):
        await redis.set(redis_key, json.dumps(stored, default=str), ex=ttl)
    return reply


def _replay(stored: dict[str, Any], fingerprint: str) -> Reply:
    if stored.get("fp") != fingerprint:
        raise IdempotencyKeyReused()
    if stored.get("state") != "done":
        raise IdempotencyRequestInFlight()
    headers = {**stored.get("headers", {}), "Idempotent-Replayed": "true"}
    return Reply(int(stored["status"]), stored["body"], headers)


async def _forget(redis: Redis, redis_key: str) -> None:
    with contextlib.suppress(RedisError):
        await redis.delete(redis_key)
