"""Bearer tokens against real ingress processes: audience, issuer, lifetime, and
RS256/ES256 keys given as a PEM or served as a JWKS document over real HTTP.

Each asymmetric set-up runs its own ingress with its own settings; the keys are made
here with `cryptography`, so nothing secret lives in the repository.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from devtools.processes import free_port
from services.settings import Settings
from tests.conftest import JWT_SECRET, Ingress, start_ingress
from tests.test_http_api import token_claims

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
DEV_JWT_SECRET: str = Settings.model_fields["payment_jwt_secret"].default
MAX_LIFETIME = 86_400  # the default PAYMENT_JWT_MAX_LIFETIME_SECONDS the suite runs with


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def signed(key: Any, algorithm: str, *, kid: str | None = None, **changes: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(token_claims(**changes), key, algorithm, headers=headers)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def hs256_with(secret: bytes, **changes: Any) -> str:
    """An HS256 token keyed with any bytes, the public PEM included (PyJWT itself refuses
    to sign that: this is what an attacker would write by hand)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(token_claims(**changes)).encode())
    signature = hmac.new(secret, head + b"." + body, hashlib.sha256).digest()
    return (head + b"." + body + b"." + _b64(signature)).decode()


def balance(base_url: str, token: str) -> httpx.Response:
    return httpx.get(
        f"{base_url}/payment/credits/balance", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def assert_refused(response: httpx.Response, message: str | None = None) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "PAY009"
    if message:
        assert message in response.json()["message"], response.text


# --- audience, issuer, lifetime (the suite's HS256 ingress) ------------------------

@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (lambda now: {"aud": "another-service"}, "another audience"),
        (lambda now: {"aud": None}, "lacks the aud claim"),
        (lambda now: {"iss": "someone-else"}, "another issuer"),
        (lambda now: {"iss": None}, "lacks the iss claim"),
        (lambda now: {"iat": None}, "lacks the iat claim"),
        (lambda now: {"iat": now, "exp": now + MAX_LIFETIME + 60}, "lives longer"),
        # Minted for a month, stolen with a minute left: still too long-lived.
        (lambda now: {"iat": now - 30 * 86_400, "exp": now + 600}, "lives longer"),
        (lambda now: {"iat": now + 3600, "exp": now + 7200}, "not valid yet"),
    ],
    ids=["wrong-audience", "no-audience", "wrong-issuer", "no-issuer", "no-iat", "too-long",
         "old-and-long", "iat-in-future"],
)
def test_hs256_tokens_must_name_us_and_live_briefly(ingress: Ingress, changes, message):
    # Times from the moment the test runs, not from collection: a long suite would
    # otherwise hand it tokens that have simply expired.
    claims = changes(int(time.time()))
    assert_refused(balance(ingress.url, signed(JWT_SECRET, "HS256", **claims)), message)


def test_a_token_with_every_claim_right_is_accepted(ingress: Ingress):
    user = f"u-{uuid.uuid4().hex[:8]}"
    response = balance(ingress.url, signed(JWT_SECRET, "HS256", sub=user,
                                           exp=int(time.time()) + MAX_LIFETIME))
    assert response.status_code == 200, response.text
    assert response.json()["userId"] == user


# --- RS256 / ES256 with a PEM public key -------------------------------------------


@pytest.fixture(scope="module")
def rs256_ingress(settings) -> Iterator[Ingress]:
    # The HS secret is left at its development default: with HS256 off it verifies
    # nothing, so the placeholder check lets this ingress start outside dev mode.
    started = start_ingress(settings.model_copy(update={
        "payment_jwt_algorithms": "RS256",
        "payment_jwt_public_key": public_pem(RSA_KEY),
        "payment_jwt_secret": DEV_JWT_SECRET,
    }), "ingress-rs256")
    yield started
    started.process.stop()


@pytest.fixture(scope="module")
def es256_ingress(settings) -> Iterator[Ingress]:
    started = start_ingress(settings.model_copy(update={
        # One line with `\n` escapes, as operators often write a PEM into an env var.
        "payment_jwt_algorithms": "ES256",
        "payment_jwt_public_key": public_pem(EC_KEY).replace("\n", "\\n"),
    }), "ingress-es256")
    yield started
    started.process.stop()


def test_rs256_tokens_are_accepted_with_the_public_key(rs256_ingress: Ingress):
    response = balance(rs256_ingress.url, signed(RSA_KEY, "RS256", sub="u-rs256"))
    assert response.status_code == 200, response.text
    assert response.json()["userId"] == "u-rs256"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize(
    "forge",
    [
        lambda: signed(JWT_SECRET, "HS256"),
        lambda: signed(DEV_JWT_SECRET, "HS256"),
        lambda: hs256_with(public_pem(RSA_KEY).encode()),
        lambda: signed(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        lambda: signed(EC_KEY, "ES256"),
    ],
    ids=["hs256-suite-secret", "hs256-dev-secret", "hs256-keyed-with-public-pem",
         "rs256-other-key", "es256-not-configured"],
)
def test_with_a_public_key_no_other_key_or_algorithm_gets_in(rs256_ingress: Ingress, forge):
    assert_refused(balance(rs256_ingress.url, forge()))


def test_es256_tokens_are_accepted_with_the_public_key(es256_ingress: Ingress):
    response = balance(es256_ingress.url, signed(EC_KEY, "ES256", sub="u-es256"))
    assert response.status_code == 200, response.text
    assert response.json()["userId"] == "u-es256"
    assert_refused(balance(es256_ingress.url, signed(RSA_KEY, "RS256")), "algorithm")


# --- JWKS over HTTP ----------------------------------------------------------------


@dataclass
class JwksServer:
    """The identity provider's key set on a real local HTTP server, counting fetches."""

    document: dict[str, Any]
    fetches: list[float] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/.well-known/jwks.json"

    def serve(self) -> ThreadingHTTPServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches.append(time.monotonic())
                body = json.dumps(owner.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        public = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"alg": "RS256"}
    else:
        public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"alg": "ES256"}
    return public | {"kid": kid, "use": "sig"}


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    provider = JwksServer({"keys": [jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1")]})
    server = provider.serve()
    yield provider
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def jwks_ingress(settings, jwks: JwksServer) -> Iterator[Ingress]:
    started = start_ingress(settings.model_copy(update={
        "payment_jwt_algorithms": "RS256,ES256", "payment_jwt_jwks_url": jwks.url,
    }), "ingress-jwks")
    yield started
    started.process.stop()


def test_jwks_keys_verify_tokens_by_kid_and_the_set_is_cached(jwks_ingress: Ingress, jwks):
    before = len(jwks.fetches)
    rs = balance(jwks_ingress.url, signed(RSA_KEY, "RS256", kid="rsa-1", sub="u-jwks-rs"))
    es = balance(jwks_ingress.url, signed(EC_KEY, "ES256", kid="ec-1", sub="u-jwks-es"))
    assert (rs.status_code, es.status_code) == (200, 200), (rs.text, es.text)
    assert (rs.json()["userId"], es.json()["userId"]) == ("u-jwks-rs", "u-jwks-es")
    for _ in range(5):
        assert balance(jwks_ingress.url, signed(RSA_KEY, "RS256", kid="rsa-1")).status_code == 200
    # An unknown kid is refused without a refetch storm (cooldown), a known kid with
    # the wrong key is refused, and so is an HS256 token whatever its kid says.
    assert_refused(balance(jwks_ingress.url, signed(RSA_KEY, "RS256", kid="nobody")), "kid")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_refused(balance(jwks_ingress.url, signed(other, "RS256", kid="rsa-1")))
    assert_refused(balance(jwks_ingress.url, signed(JWT_SECRET, "HS256", kid="rsa-1")))
    assert len(jwks.fetches) - before <= 1, "the key set is fetched once, then cached"
    assert len(jwks.fetches) >= 1


def test_an_unreachable_jwks_answers_503_not_401(settings):
    dead = start_ingress(settings.model_copy(update={
        "payment_jwt_algorithms": "RS256",
        "payment_jwt_jwks_url": f"http://127.0.0.1:{free_port()}/jwks.json",
    }), "ingress-jwks-down")
    try:
        response = balance(dead.url, signed(RSA_KEY, "RS256", kid="rsa-1"))
    finally:
        dead.process.stop()
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "PAY015"
