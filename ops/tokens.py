"""Development JWTs (HS256 with PAYMENT_JWT_SECRET) for trying the API and for tests."""

import time

import jwt


def make_token(secret: str, subject: str, roles: list[str], ttl_seconds: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": subject, "roles": roles, "iat": now, "exp": now + ttl_seconds}, secret, "HS256"
    )
