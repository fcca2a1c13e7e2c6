"""Who the caller is (a verified bearer JWT, or an admin console session) and the role
guards of the routes.

Claims: `sub` (user id), `roles` (any of user, service, admin; none means a plain user),
`email` (optional); signature, `aud`, `iss`, `iat`, `exp` and lifetime are checked by
`ingress.token_verifier`. Routes guarded here declare `security=BEARER`, so the OpenAPI
document says which operations need the token.

A request with no Authorization header but the `pika_admin_session` cookie is the
console's: its principal comes from the server-side session (ingress.admin_sessions).
A browser sends that cookie by itself, so a cookie-authenticated request that can change
something (any method but GET/HEAD/OPTIONS) must also carry the session's CSRF token in
`X-CSRF-Token`, which another site's page cannot read; without it the request is not
authenticated at all (403 PAY010), whatever route it is for.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import SecurityRequirement
from litestar.types import Scope

from ingress.admin_sessions import COOKIE, CSRF_HEADER, SAFE_METHODS, cookie_value, sessions_of
from ingress.token_verifier import TokenVerifier
from services.errors import Forbidden, Unauthorized

ROLES = frozenset({"user", "service", "admin"})
BEARER_SCHEME = "bearerAuth"
# The OpenAPI security requirement of every route behind one of the guards below.
BEARER: list[SecurityRequirement] = [{BEARER_SCHEME: []}]


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]
    email: str | None = None
    # `exp` of the token: a WebSocket authenticated with it is closed at this instant.
    expires_at: float = 0.0

    @property
    def privileged(self) -> bool:
        return bool(self.roles & {"service", "admin"})

    def may_see(self, user_id: str) -> bool:
        return self.privileged or self.subject == user_id


async def decode_token(header: str | None, verifier: TokenVerifier) -> Principal:
    if not header or not header.lower().startswith("bearer "):
        raise Unauthorized("send Authorization: Bearer <JWT>")
    claims = await verifier.verify(header[7:].strip())
    subject = claims.get("sub")
    roles = claims.get("roles", ["user"])
    if not isinstance(subject, str) or not subject or not isinstance(roles, list):
        raise Unauthorized("the token's sub or roles claim is malformed")
    email = claims.get("email")
    return Principal(
        subject,
        frozenset(r for r in roles if r in ROLES),
        email if isinstance(email, str) else None,
        float(claims["exp"]),
    )


def verifier_of(connection: ASGIConnection) -> TokenVerifier:
    verifier: TokenVerifier = connection.app.state.tokens
    return verifier


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def session_principal(scope: Scope, session_id: str) -> Principal:
    """The console session behind the cookie; for a request that can change something,
    only with the session's CSRF token in X-CSRF-Token."""
    app = scope["app"]
    session = await sessions_of(app.state).get(session_id)
    if session is None:
        raise Unauthorized("the console session is unknown or expired: sign in again")
    if scope.get("method", "GET") not in SAFE_METHODS and not session.csrf_matches(
        _header(scope, CSRF_HEADER.encode())
    ):
        raise Forbidden(
            "a request authenticated by the console session cookie must send the session's "
            "csrfToken (GET /payment/admin/session) in the X-CSRF-Token header"
        )
    return Principal(session.subject, frozenset(r for r in session.roles if r in ROLES),
                     session.email, session.expires_at)


async def scope_principal(scope: Scope, header: str | None, verifier: TokenVerifier) -> Principal:
    """The caller, verified once per request (rate limits, guards and handlers all ask).

    A bearer token always wins; the session cookie counts only when there is none."""
    state = scope.setdefault("state", {})
    cached = state.get("principal")
    if isinstance(cached, Principal):
        return cached
    session_id = None if header else cookie_value(_header(scope, b"cookie"), COOKIE)
    if session_id:
        principal = await session_principal(scope, session_id)
    else:
        principal = await decode_token(header, verifier)
    state["principal"] = principal
    return principal


async def principal_of(connection: ASGIConnection) -> Principal:
    return await scope_principal(
        connection.scope, connection.headers.get("authorization"), verifier_of(connection)
    )


def require_roles(*roles: str) -> Callable[[ASGIConnection, BaseRouteHandler], Awaitable[None]]:
    """Guard: the caller must hold one of `roles`."""
    wanted = frozenset(roles)

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        principal = await principal_of(connection)
        if not principal.roles & wanted:
            raise Forbidden(f"this needs one of the roles: {', '.join(sorted(wanted))}")

    return guard


authenticated = require_roles(*ROLES)
privileged = require_roles("service", "admin")
admin_only = require_roles("admin")
