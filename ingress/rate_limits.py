"""Request rate limits per user and per client IP (Redis fixed windows of one minute).

The client IP is `ingress.client_address`'s: the TCP peer, or behind TRUSTED_PROXIES
the right-most forwarded address that is not one of them; never a header alone.

Groups: `read` (GET), `write` (POST/PATCH/DELETE); health, docs, the WebSocket
upgrade and Stripe webhooks (signed, size-limited) are exempt; /metrics is not on
this port at all. A request over a limit gets 429 PAY011 with Retry-After and changes
nothing. When Redis is down the limits fail open: reads keep working, and a write that
carries an Idempotency-Key still answers 503 from the idempotency layer, so nothing can
apply twice.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from typing import Any

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send
from redis.exceptions import NoScriptError, RedisError

from ingress.auth import scope_principal
from ingress.client_address import client_address_of
from services.errors import DependencyUnavailable, Forbidden, RateLimited, Unauthorized

log = logging.getLogger("pika.ingress")
WINDOW = 60
EXEMPT_PREFIXES = (
    "/payment/health",
    "/payment/ready",
    "/payment/docs",
    "/payment/openapi",
    "/payment/asyncapi",
    "/payment/schemas",
    "/payment/webhooks/",
    "/payment/ws",
)


# Count this request in each window (the address's, the user's) in ONE command: a window
# gets its expiry when it is created, so every counter still expires.
COUNT = """
local counts = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('EXPIRE', key, ARGV[1]) end
  counts[i] = n
end
return counts
"""
COUNT_SHA = hashlib.sha1(COUNT.encode()).hexdigest()


class WindowCounter:
    """Counts requests in Redis, the requests of one moment in one round trip.

    Requests that arrive while a round trip is out wait for it, then go together in the
    next: under load, one EVALSHA counts dozens of requests, each of which still gets
    its own count back (the script increments key after key, so two requests of one
    user get n and n + 1). Nothing is counted locally: replicas share the windows, as
    before. Per request this was a Redis round trip and a tenth of a balance read's CPU.
    """

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self.waiting: list[tuple[list[str], asyncio.Future[list[int]]]] = []
        self.sending = False

    async def count(self, keys: list[str]) -> list[int]:
        """Each key's count after this request (RedisError when Redis fails)."""
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self.waiting.append((keys, future))
        if not self.sending:
            self.sending = True
            asyncio.get_running_loop().call_soon(self._send_next)  # this moment's arrivals too
        return await future

    def _send_next(self) -> None:
        batch, self.waiting = self.waiting, []
        if not batch:
            self.sending = False
            return
        task = asyncio.ensure_future(self._send(batch))
        task.add_done_callback(lambda _: self._send_next())

    async def _send(self, batch: list[tuple[list[str], asyncio.Future[list[int]]]]) -> None:
        try:
            counts = await _count(self.redis, [key for keys, _ in batch for key in keys])
        except BaseException as error:  # every waiter learns it (RedisError: fail open)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        at = 0
        for keys, future in batch:
            if not future.done():
                future.set_result(counts[at : at + len(keys)])
            at += len(keys)


async def _count(redis: Any, keys: list[str]) -> list[int]:
    """Each key's count after this request: EVALSHA, loading the script on a server that
    does not have it yet (a restart, a failover)."""
    try:
        counts = await redis.evalsha(COUNT_SHA, len(keys), *keys, WINDOW + 5)
    except NoScriptError:
        counts = await redis.eval(COUNT, len(keys), *keys, WINDOW + 5)
    return [int(c) for c in counts]


def _limits(settings: Any, group: str) -> tuple[int, int]:
    if group == "read":
        return settings.rate_limit_reads_per_minute, settings.rate_limit_ip_per_minute
    return settings.rate_limit_writes_per_minute, settings.rate_limit_ip_per_minute


async def check(counter: WindowCounter, settings: Any, *, group: str, user: str | None, ip: str) -> None:
    """Count this request; raise RateLimited when a window is full."""
    window = int(time.time()) // WINDOW
    retry_after = WINDOW - int(time.time()) % WINDOW
    user_limit, ip_limit = _limits(settings, group)
    prefix = f"{settings.rate_limit_namespace}:rl:{group}"
    keys = [(f"{prefix}:ip:{ip}:{window}", ip_limit)]
    if user:
        keys.append((f"{prefix}:user:{user}:{window}", user_limit))
    counts = await counter.count([key for key, _ in keys])
    for (key, limit), count in zip(keys, counts, strict=True):
        if count > limit:
            who = "user" if ":user:" in key else "client address"
            raise RateLimited(
                f"too many {group} requests for this {who}; retry in {retry_after}s",
                limit=limit,
                windowSeconds=WINDOW,
                retryAfter=retry_after,
            )


class RateLimits(ASGIMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(EXEMPT_PREFIXES):
            await next_app(scope, receive, send)
            return
        app = scope["app"]
        settings, resources = app.state.settings, getattr(app.state, "resources", None)
        group = "read" if scope.get("method") in ("GET", "HEAD", "OPTIONS") else "write"
        headers = dict(scope.get("headers") or [])
        user = None
        # Without a valid token (or console session) the route answers 401, and a session
        # request without its CSRF token 403; the address limit still counts them. A JWKS
        # or session-store outage answers 503 on the route itself; here it only means "no user".
        with contextlib.suppress(Unauthorized, Forbidden, DependencyUnavailable):
            authorization = headers.get(b"authorization", b"").decode("latin-1") or None
            user = (await scope_principal(scope, authorization, app.state.tokens)).subject
        ip = client_address_of(scope, settings.trusted_proxy_networks) or "unknown"
        try:
            if resources is not None:
                await check(resources.window_counter, settings, group=group, user=user, ip=ip)
        except RateLimited as error:
            await _reject(send, error)
            return
        except RedisError:
            log.warning("rate limits unavailable (redis); request allowed")
        await next_app(scope, receive, send)


async def _reject(send: Send, error: RateLimited) -> None:
    body = json.dumps(error.as_body()).encode()
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 429,
        "headers": [
            (b"content-type", b"application/json"),
            (b"retry-after", str(error.details["retryAfter"]).encode()),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
