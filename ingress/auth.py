"""Who the caller is (a verified bearer JWT) and the role guards of the routes.

Claims: `sub` (user id), `roles` (any of user, service, admin; none means a plain user),
`email` (optional); signature, `aud`, `iss`, `iat`, `exp` and lifetime are checked by
`ingress.token_verifier`. Routes guarded here declare `security=BEARER`, so the OpenAPI
document says which operations need the token.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import SecurityRequirement
from litestar.types import Scope

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


async def scope_principal(scope: Scope, header: str | None, verifier: TokenVerifier) -> Principal:
    """The caller, verified once per request (rate limits, guards and handlers all ask)."""
    state = scope.setdefault("state", {})
    cached = state.get("principal")
    if isinstance(cached, Principal):
        return cached
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
