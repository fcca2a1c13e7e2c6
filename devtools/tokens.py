"""Development JWTs (HS256 with PAYMENT_JWT_SECRET) for trying the API and for tests.

They carry every claim the ingress verifies (`aud`, `iss`, `iat`, `exp`, `sub`), so a
development token fails for the same reasons a production one would.
"""

import time

import jwt

from services.settings import Settings

DEFAULT_AUDIENCE: str = Settings.model_fields["payment_jwt_audience"].default
DEFAULT_ISSUER: str = Settings.model_fields["payment_jwt_issuer"].default


def make_token(
    secret: str,
    subject: str,
    roles: list[str],
    ttl_seconds: int = 3600,
    *,
    audience: str = DEFAULT_AUDIENCE,
    issuer: str = DEFAULT_ISSUER,
) -> str:
    now = int(time.time())
    claims = {"sub": subject, "roles": roles, "aud": audience, "iss": issuer, "iat": now,
              "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, "HS256")
