"""Server-side sessions of the admin console, and the sign-ins waiting for their callback.

The browser holds only a random 256-bit id in the `pika_admin_session` cookie; Redis
holds what it stands for (subject, email, roles, CSRF token, expiry) under the id's
SHA-256, so a copy of Redis does not hand out live cookies. A session ends when it
expires (Redis TTL, and the stored expiry checked on every read), or at sign-out.

A started sign-in (state, nonce, PKCE verifier, where to go next) lives under its
state for ADMIN_SIGN_IN_TIMEOUT_SECONDS and is taken with GETDEL: a callback, or a
replayed one, can use it once.
"""

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.errors import DependencyUnavailable

COOKIE = "pika_admin_session"
COOKIE_PATH = "/payment"
# Binds a started sign-in to the browser that started it (login CSRF); sent back on the
# provider's top-level redirect, so SameSite=Lax, and only to the callback.
SIGN_IN_COOKIE = "pika_admin_sign_in"
CALLBACK_PATH = "/payment/admin/callback"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PREFIX = "pika:admin"


@dataclass(frozen=True)
class AdminSession:
    subject: str
    email: str | None
    roles: tuple[str, ...]
    csrf_token: str
    expires_at: float

    def as_record(self) -> dict[str, Any]:
        return {"subject": self.subject, "email": self.email, "roles": list(self.roles),
                "csrfToken": self.csrf_token, "expiresAt": self.expires_at}

    def csrf_matches(self, sent: str | None) -> bool:
        """Constant-time comparison, so the token cannot be guessed a byte at a time."""
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf_token.encode())


@dataclass(frozen=True)
class PendingSignIn:
    nonce: str
    code_verifier: str
    next_path: str


def _session_key(session_id: str) -> str:
    return f"{PREFIX}:session:{hashlib.sha256(session_id.encode()).hexdigest()}"


def _sign_in_key(state: str) -> str:
    return f"{PREFIX}:sign-in:{hashlib.sha256(state.encode()).hexdigest()}"


class AdminSessions:
    def __init__(self, redis: Redis, lifetime_seconds: int, sign_in_timeout_seconds: int) -> None:
        self.redis = redis
        self.lifetime = lifetime_seconds
        self.sign_in_timeout = sign_in_timeout_seconds

    async def create(
        self, subject: str, email: str | None, roles: frozenset[str]
    ) -> tuple[str, AdminSession]:
        """A new session and its id (the cookie's value, 256 random bits)."""
        session_id = secrets.token_urlsafe(32)
        session = AdminSession(subject, email, tuple(sorted(roles)), secrets.token_urlsafe(32),
                               time.time() + self.lifetime)
        try:
            await self.redis.set(_session_key(session_id), json.dumps(session.as_record()), ex=self.lifetime)
        except RedisError as error:
            raise DependencyUnavailable("the session store (redis) is unavailable") from error
        return session_id, session

    async def get(self, session_id: str) -> AdminSession | None:
        """The live session of this id, or None (unknown, signed out or expired)."""
        if not session_id or len(session_id) > 128:
            return None
        try:
            raw = await self.redis.get(_session_key(session_id))
        except RedisError as error:
            raise DependencyUnavailable("the session store (redis) is unavailable") from error
        if raw is None:
            return None
        record = json.loads(raw)
        session = AdminSession(record["subject"], record.get("email"), tuple(record["roles"]),
                               record["csrfToken"], float(record["expiresAt"]))
        return session if session.expires_at > time.time() else None

    async def delete(self, session_id: str) -> None:
        try:
            await self.redis.delete(_session_key(session_id))
        except RedisError as error:
            raise DependencyUnavailable("the session store (redis) is unavailable") from error

    async def remember_sign_in(self, state: str, pending: PendingSignIn) -> None:
        record = {"nonce": pending.nonce, "codeVerifier": pending.code_verifier, "next": pending.next_path}
        try:
            await self.redis.set(_sign_in_key(state), json.dumps(record), ex=self.sign_in_timeout)
        except RedisError as error:
            raise DependencyUnavailable("the session store (redis) is unavailable") from error

    async def take_sign_in(self, state: str) -> PendingSignIn | None:
        """The sign-in started with `state`, removed as it is read (usable once)."""
        try:
            raw = await self.redis.getdel(_sign_in_key(state))
        except RedisError as error:
            raise DependencyUnavailable("the session store (redis) is unavailable") from error
        if raw is None:
            return None
        record = json.loads(raw)
        return PendingSignIn(record["nonce"], record["codeVerifier"], record["next"])


def sessions_of(app_state: Any) -> AdminSessions:
    """The store over the ingress's Redis client (built per call: it holds no state of its own)."""
    settings = app_state.settings
    return AdminSessions(app_state.resources.redis, settings.admin_session_seconds,
                         settings.admin_sign_in_timeout_seconds)


def cookie_value(raw_header: str | None, name: str) -> str | None:
    """One cookie's value from a Cookie header: the first of that name, as browsers send
    the cookie of the most specific path first."""
    if not raw_header:
        return None
    for part in raw_header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip().strip('"')
    return None
