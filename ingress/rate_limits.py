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

import contextlib
import json
import logging
import time
from typing import Any

from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, HTTPResponseStartEvent, Receive, Scope, Send
from redis.exceptions import RedisError

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


def _limits(settings: Any, group: str) -> tuple[int, int]:
    if group == "read":
        return settings.rate_limit_reads_per_minute, settings.rate_limit_ip_per_minute
    return settings.rate_limit_writes_per_minute, settings.rate_limit_ip_per_minute


async def check(redis: Any, settings: Any, *, group: str, user: str | None, ip: str) -> None:
    """Count this request; raise RateLimited when a window is full."""
    window = int(time.time()) // WINDOW
    retry_after = WINDOW - int(time.time()) % WINDOW
    user_limit, ip_limit = _limits(settings, group)
    prefix = f"{settings.rate_limit_namespace}:rl:{group}"
    keys = [(f"{prefix}:ip:{ip}:{window}", ip_limit)]
    if user:
        keys.append((f"{prefix}:user:{user}:{window}", user_limit))
    async with redis.pipeline(transaction=False) as pipe:
        for key, _ in keys:
            pipe.incr(key)
            pipe.expire(key, WINDOW + 5)
        counts = (await pipe.execute())[::2]
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
                await check(resources.redis, settings, group=group, user=user, ip=ip)
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
