"""The ingress remembers verified tokens (issue 14: a tenth of a balance read's CPU was
checking the same signature again), and that memory must never let in what the checks
would refuse: a token past its `exp`, or anything but the exact token that passed."""

import asyncio
import time

import jwt
import pytest

from devtools.tokens import make_token
from ingress.token_verifier import TokenVerifier
from services.errors import Unauthorized
from services.settings import Settings


@pytest.fixture
def verifier(settings: Settings) -> TokenVerifier:
    return TokenVerifier(settings)


def mint(settings: Settings, subject: str, ttl: int) -> str:
    return make_token(settings.payment_jwt_secret, subject, ["user"], ttl,
                      audience=settings.payment_jwt_audience, issuer=settings.payment_jwt_issuer)


async def test_a_remembered_token_is_refused_at_its_exp(settings, verifier):
    token = mint(settings, "cache-expiry", ttl=2)
    assert (await verifier.verify(token))["sub"] == "cache-expiry"
    assert (await verifier.verify(token))["sub"] == "cache-expiry"  # from memory now
    await asyncio.sleep(max(0.0, jwt.decode(token, options={"verify_signature": False})["exp"]
                            - time.time()) + 0.1)
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(token)


async def test_only_the_exact_token_hits_the_memory(settings, verifier):
    """A remembered token with its signature or its claims altered is checked, and refused."""
    token = mint(settings, "cache-exact", ttl=60)
    await verifier.verify(token)
    header, payload, signature = token.split(".")
    forged_signature = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    for forged in (f"{header}.{payload}.{forged_signature}", f"{header}.{payload}X.{signature}"):
        with pytest.raises(Unauthorized):
            await verifier.verify(forged)


async def test_the_memory_is_bounded(settings, verifier, monkeypatch):
    """Beyond its size the oldest token goes: a flood of tokens cannot grow it without end."""
    monkeypatch.setattr("ingress.token_verifier.VERIFIED_CACHE_SIZE", 3)
    tokens = [mint(settings, f"cache-bound-{n}", ttl=60) for n in range(5)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier.verified) == 3
