"""Signature and claims of a bearer JWT: which key, which algorithms, which claims.

One verifier per ingress process, built from the settings at start:
- HS256 with PAYMENT_JWT_SECRET (development, or a deployment sharing a secret with
  its identity provider), or
- RS256/ES256 with PAYMENT_JWT_PUBLIC_KEY (one PEM) or PAYMENT_JWT_JWKS_URL (the
  provider's key set; a token names its key by `kid`).
The two kinds never mix (Settings refuses HS256 next to a public key), so a token
signed with HS256 and the public key as its "secret" (algorithm confusion) has no
algorithm here that accepts it.

Every token must carry `sub`, `aud` (PAYMENT_JWT_AUDIENCE), `iss`
(PAYMENT_JWT_ISSUER), `iat` and `exp`, and `exp - iat` must not exceed
PAYMENT_JWT_MAX_LIFETIME_SECONDS. `iat` is required rather than inferred: without it
the lifetime the issuer granted is unknown, and `exp - now` would accept a token
minted for a year once it had only a day left.

A token that passed every check is remembered (its claims, by the SHA-256 of the whole
token) until its `exp`, at most VERIFIED_CACHE_SIZE of them: a client sends the same
token with every request, and checking its signature again each time was a tenth of a
balance read's CPU (docs/benchmarks.md, "HTTP"). Only the exact token, byte for byte,
hits; a remembered token stops being accepted at its `exp` as before. A signing key
withdrawn from the JWKS stops new tokens at once; tokens it already signed and that were
seen here live to their `exp` (at most PAYMENT_JWT_MAX_LIFETIME_SECONDS).
"""

import asyncio
import hashlib
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from services.errors import DependencyUnavailable, Unauthorized
from services.settings import Settings

REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "iss"]
JWKS_CACHE_SECONDS = 300  # a rotated-out key stops verifying within this long
JWKS_TIMEOUT_SECONDS = 5.0  # a request waits at most this long for the key set
JWKS_REFETCH_COOLDOWN_SECONDS = 30  # unknown `kid`s cannot make us fetch more often
VERIFIED_CACHE_SIZE = 10_000  # tokens remembered; the oldest goes first beyond it

_REASONS: dict[type[jwt.PyJWTError], str] = {
    jwt.ExpiredSignatureError: "the token has expired",
    jwt.InvalidAudienceError: "the token is for another audience",
    jwt.InvalidIssuerError: "the token is from another issuer",
    jwt.ImmatureSignatureError: "the token is not valid yet",
    jwt.InvalidAlgorithmError: "the token's algorithm is not accepted",
}


def _pem(text: str) -> bytes:
    """PEM from an environment variable; `\\n` escapes are accepted where newlines are awkward."""
    return (text if "\n" in text else text.replace("\\n", "\n")).strip().encode()


class TokenVerifier:
    """Verifies bearer tokens against the configured key; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self.algorithms = list(settings.jwt_algorithms)
        self.audience = settings.payment_jwt_audience
        self.issuer = settings.payment_jwt_issuer
        self.max_lifetime = settings.payment_jwt_max_lifetime_seconds
        self.jwks: jwt.PyJWKClient | None = None
        self.key: Any = settings.payment_jwt_secret
        self.verified: dict[bytes, dict[str, Any]] = {}  # sha256(token) -> claims, oldest first
        if settings.payment_jwt_jwks_url:
            self.jwks = jwt.PyJWKClient(
                settings.payment_jwt_jwks_url,
                cache_jwk_set=True,
                lifespan=JWKS_CACHE_SECONDS,
                timeout=JWKS_TIMEOUT_SECONDS,
                cooldown_duration=JWKS_REFETCH_COOLDOWN_SECONDS,
            )
        elif settings.payment_jwt_public_key:
            # Parsed once at start: a broken PEM stops the ingress, not every request.
            self.key = load_pem_public_key(_pem(settings.payment_jwt_public_key))

    async def _key_for(self, token: str) -> Any:
        if self.jwks is None:
            return self.key
        try:
            # PyJWKClient fetches over blocking HTTP when its cache is stale: off the loop.
            signing_key = await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as error:
            raise DependencyUnavailable("the identity provider's keys (JWKS) cannot be fetched") from error
        except jwt.PyJWTError as error:
            raise Unauthorized("the token's key (kid) is not known", reason=type(error).__name__) from error
        return signing_key

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or Unauthorized saying which check failed."""
        digest = hashlib.sha256(token.encode()).digest()
        claims = self.verified.get(digest)
        if claims is not None:
            if time.time() < claims["exp"]:  # PyJWT's own rule: expired once now >= exp
                return claims
            del self.verified[digest]
        claims = await self._check(token)
        if len(self.verified) >= VERIFIED_CACHE_SIZE:
            del self.verified[next(iter(self.verified))]
        self.verified[digest] = claims
        return claims

    async def _check(self, token: str) -> dict[str, Any]:
        """Every check of the module docstring, on the token itself."""
        key = await self._key_for(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.MissingRequiredClaimError as error:
            raise Unauthorized(
                f"the token lacks the {error.claim} claim", reason=type(error).__name__
            ) from error
        except jwt.PyJWTError as error:
            message = next(
                (text for kind, text in _REASONS.items() if isinstance(error, kind)),
                "the token is not valid",
            )
            raise Unauthorized(message, reason=type(error).__name__) from error
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > self.max_lifetime:
            raise Unauthorized(
                "the token lives longer than this service accepts",
                reason="LifetimeTooLong", lifetimeSeconds=lifetime, maxLifetimeSeconds=self.max_lifetime,
            )
        return claims
