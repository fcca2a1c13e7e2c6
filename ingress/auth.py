"""JWT authentication (HS256, PAYMENT_JWT_SECRET) and role guards.

Claims: `sub` (user id), `roles` (any of user, service, admin), `exp` (required).
A token without `roles` is a plain user.
"""

from collections.abc import Callable
from dataclasses import dataclass

import jwt
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from services.errors import Forbidden, Unauthorized

ROLES = frozenset({"user", "service", "admin"})


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]
    email: str | None = None

    @property
    def privileged(self) -> bool:
        return bool(self.roles & {"service", "admin"})

    def may_see(self, user_id: str) -> bool:
        return self.privileged or self.subject == user_id


def decode_token(header: str | None, secret: str) -> Principal:
    if not header or not header.lower().startswith("bearer "):
        raise Unauthorized("send Authorization: Bearer <JWT>")
    token = header[7:].strip()
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError as error:
        raise Unauthorized("the token has expired") from error
    except jwt.PyJWTError as error:
        raise Unauthorized("the token is not valid", reason=type(error).__name__) from error
    subject = claims.get("sub")
    roles = claims.get("roles", ["user"])
    if not isinstance(subject, str) or not subject or not isinstance(roles, list):
        raise Unauthorized("the token's sub or roles claim is malformed")
    email = claims.get("email")
    return Principal(
        subject, frozenset(r for r in roles if r in ROLES), email if isinstance(email, str) else None
    )


def principal_of(connection: ASGIConnection) -> Principal:
    """The caller, decoded once per request and cached on its scope."""
    cached = connection.scope.get("state", {}).get("principal")
    if isinstance(cached, Principal):
        return cached
    principal = decode_token(
        connection.headers.get("authorization"), connection.app.state.settings.payment_jwt_secret
    )
    connection.scope.setdefault("state", {})["principal"] = principal
    return principal


def require_roles(*roles: str) -> Callable[[ASGIConnection, BaseRouteHandler], None]:
    """Guard: the caller must hold one of `roles`."""
    wanted = frozenset(roles)

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        if not principal.roles & wanted:
            raise Forbidden(f"this needs one of the roles: {', '.join(sorted(wanted))}")

    return guard


authenticated = require_roles(*ROLES)
privileged = require_roles("service", "admin")
admin_only = require_roles("admin")
