"""Admin sign-in to the console: OpenID Connect against a real provider, sessions, CSRF.

The provider is oidc-provider-mock (Authlib's authorization server, discovery, JWKS,
RS256 ID tokens, nonce required), served on a free port in this process. It does not
check PKCE itself, so `PkceCheck` wraps it and refuses a token request whose
`code_verifier` does not hash (S256) to the authorization request's `code_challenge`,
as a real provider does. The ingresses under test are real processes against the
suite's Postgres, Redis and broker: one signing in through the provider outside
development mode (so its cookies are Secure: httpx would not send them over http, and
the tests carry them by hand), one in development mode with no provider.
"""

import base64
import contextlib
import hashlib
import io
import json
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import oidc_provider_mock
import pytest
import werkzeug.serving
from joserfc import jwt
from joserfc.jwk import RSAKey
from redis.asyncio import Redis

from adapters.oidc.client import OidcClient
from devtools import processes
from devtools.processes import free_port
from ingress.controllers.admin_session import CONSOLE_PATH, safe_next
from services.errors import Unauthorized
from services.settings import Settings
from tests.conftest import ChildProcess, Ingress, auth, start_ingress

CLIENT_ID = "pika-console-test"
CLIENT_SECRET = "console-" + uuid.uuid4().hex + uuid.uuid4().hex
SESSION_SECONDS = 900


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class PkceCheck:
    """WSGI wrapper of the provider: remembers each issued code's challenge and refuses a
    token request for it without the matching verifier (RFC 7636, section 4.6)."""

    app: Any
    challenges: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    authorize_queries: list[dict[str, list[str]]] = field(default_factory=list)
    token_forms: list[dict[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/oauth2/authorize" and method == "POST":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            with self.lock:
                self.authorize_queries.append(query)

            def remember(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                location = next((v for k, v in headers if k.lower() == "location"), "")
                code = parse_qs(urlsplit(location).query).get("code", [None])[0]
                if code:
                    with self.lock:
                        self.challenges[code] = (query.get("code_challenge", [None])[0],
                                                 query.get("code_challenge_method", [None])[0])
                return start_response(status, headers, exc_info)

            return self.app(environ, remember)
        if path == "/oauth2/token" and method == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            form = parse_qs(body.decode())
            with self.lock:
                self.token_forms.append(form)
                expected = self.challenges.get(form.get("code", [""])[0])
            verifier = form.get("code_verifier", [None])[0]
            if expected is not None and (expected[1] != "S256" or not verifier
                                         or s256(verifier) != expected[0]):
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [json.dumps({"error": "invalid_grant",
                                    "error_description": "PKCE verification failed"}).encode()]
        return self.app(environ, start_response)


@dataclass
class Provider:
    url: str
    pkce: PkceCheck

    def add_user(self, subject: str, roles: list[str]) -> None:
        response = httpx.put(f"{self.url}/users/{subject}",
                             json={"email": f"{subject}@pika.example", "roles": roles})
        assert response.status_code == 204, response.text


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    pkce = PkceCheck(oidc_provider_mock.app(require_nonce=True))
    server = werkzeug.serving.make_server("127.0.0.1", free_port(), pkce, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield Provider(f"http://127.0.0.1:{server.server_port}", pkce)
    finally:
        server.shutdown()
        thread.join(5)


def start_ingress_at(settings: Settings, port: int, name: str) -> Ingress:
    """Like conftest's start_ingress, on a port chosen first: the callback URL the
    provider is given must name it."""
    configured = settings.model_copy(update={
        "payment_service_port": port, "payment_service_host": "127.0.0.1",
        "ingress_metrics_port": free_port(), "ingress_metrics_host": "127.0.0.1",
    })
    child = ChildProcess("ingress", configured, name=name).start()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/payment/health", timeout=1).status_code == 200
        return False

    if processes.wait_until(healthy, 30, interval=0.2, process=child.process):
        return Ingress(url, child)
    child.stop()
    raise RuntimeError(f"ingress did not start:\n{child.log()[-3000:]}")


@pytest.fixture(scope="module")
def oidc_ingress(settings: Settings, provider: Provider, worker, relay) -> Iterator[Ingress]:
    """Outside development mode, signing in through the provider (confidential client)."""
    port = free_port()
    started = start_ingress_at(settings.model_copy(update={
        "admin_oidc_issuer": provider.url, "admin_oidc_client_id": CLIENT_ID,
        "admin_oidc_client_secret": CLIENT_SECRET,
        "admin_oidc_redirect_url": f"http://127.0.0.1:{port}/payment/admin/callback",
        "admin_session_seconds": SESSION_SECONDS,
    }), port, "ingress-sign-in")
    yield started
    started.process.stop()


@pytest.fixture(scope="module")
def dev_ingress(settings: Settings, worker, relay) -> Iterator[Ingress]:
    """Development mode (as `make run`), no identity provider configured."""
    started = start_ingress(settings.model_copy(update={"payment_dev_mode": True}), "ingress-dev")
    yield started
    started.process.stop()


def set_cookies(response: httpx.Response) -> dict[str, tuple[str, list[str]]]:
    """Each Set-Cookie by name: its value and its attributes, lower-cased."""
    found = {}
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        found[name] = (value.strip('"'), [a.lower() for a in attributes])
    return found


def cookie(session_id: str) -> dict[str, str]:
    return {"Cookie": f"pika_admin_session={session_id}"}


@dataclass
class Started:
    """A sign-in started at the ingress: where the browser goes, and its binding cookie."""

    authorize_url: str
    state: str
    binding: str


async def start_sign_in(http: httpx.AsyncClient, next_path: str | None = None) -> Started:
    params = {"next": next_path} if next_path is not None else {}
    response = await http.get("/payment/admin/sign-in", params=params)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    state = parse_qs(urlsplit(location).query)["state"][0]
    return Started(location, state, set_cookies(response)["pika_admin_sign_in"][0])


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return urlunsplit(parts._replace(query=urlencode(query)))


async def authorize(authorize_url: str, subject: str) -> str:
    """The provider's form, submitted as `subject`: the callback URL it redirects to."""
    async with httpx.AsyncClient(timeout=20) as idp:
        response = await idp.post(authorize_url, data={"sub": subject})
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def callback(http: httpx.AsyncClient, url: str, binding: str | None) -> httpx.Response:
    parts = urlsplit(url)
    headers = {"Cookie": f"pika_admin_sign_in={binding}"} if binding else {}
    return await http.get(f"{parts.path}?{parts.query}", headers=headers)


async def sign_in(http: httpx.AsyncClient, provider: Provider, subject: str,
                  next_path: str | None = None) -> httpx.Response:
    provider.add_user(subject, ["admin"])
    started = await start_sign_in(http, next_path)
    return await callback(http, await authorize(started.authorize_url, subject), started.binding)


@pytest.fixture
async def oidc_http(oidc_ingress: Ingress) -> Iterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=oidc_ingress.url, timeout=20) as client:
        yield client


@pytest.fixture
async def dev_http(dev_ingress: Ingress) -> Iterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=dev_ingress.url, timeout=20) as client:
        yield client


async def dev_session(http: httpx.AsyncClient, subject: str) -> tuple[str, dict[str, Any]]:
    response = await http.post("/payment/admin/dev-sign-in", json={"subject": subject})
    assert response.status_code == 200, response.text
    return set_cookies(response)["pika_admin_session"][0], response.json()


async def test_an_admin_signs_in_through_the_provider_with_pkce_state_and_nonce(oidc_http, provider):
    subject = f"ops-{uuid.uuid4().hex[:8]}"
    finished = await sign_in(oidc_http, provider, subject, next_path="/payment/admin?from=sign-in")
    assert finished.status_code == 303, finished.text
    assert finished.headers["location"] == "/payment/admin?from=sign-in"
    value, attributes = set_cookies(finished)["pika_admin_session"]
    assert len(value) >= 43, "the session id carries 256 random bits"
    assert {"httponly", "samesite=strict", "path=/payment", "secure",
            f"max-age={SESSION_SECONDS}"} <= set(attributes), attributes

    session = await oidc_http.get("/payment/admin/session", headers=cookie(value))
    assert session.status_code == 200, session.text
    body = session.json()
    assert body["subject"] == subject and body["roles"] == ["admin"]
    assert body["email"] == f"{subject}@pika.example" and len(body["csrfToken"]) >= 32
    # The cookie authenticates admin reads like a bearer token.
    flags = await oidc_http.get("/payment/admin/fraud-flags/", headers=cookie(value))
    assert flags.status_code == 200, flags.text

    # What went over the wire: PKCE S256 on the authorization request, its verifier on the
    # token request (the wrapper refused any other), the client authenticated with its secret.
    query = provider.pkce.authorize_queries[-1]
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0] and query["state"][0]
    assert "openid" in query["scope"][0].split()
    form = provider.pkce.token_forms[-1]
    assert s256(form["code_verifier"][0]) == query["code_challenge"][0]


async def test_a_user_identity_gets_no_session(oidc_http, provider):
    subject = f"user-{uuid.uuid4().hex[:8]}"
    provider.add_user(subject, ["user"])
    started = await start_sign_in(oidc_http)
    refused = await callback(oidc_http, await authorize(started.authorize_url, subject), started.binding)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "PAY010" and "not an admin" in refused.json()["message"]
    assert "pika_admin_session" not in set_cookies(refused)


async def test_a_callback_whose_state_this_browser_did_not_start_is_refused(oidc_http, provider):
    subject = f"ops-{uuid.uuid4().hex[:8]}"
    provider.add_user(subject, ["admin"])
    mine, theirs = await start_sign_in(oidc_http), await start_sign_in(oidc_http)
    # The attacker's callback (their code and state) opened in the victim's browser.
    url = await authorize(theirs.authorize_url, subject)
    for binding in (mine.binding, None):
        refused = await callback(oidc_http, url, binding)
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "PAY009"
        assert "pika_admin_session" not in set_cookies(refused)
    forged = await callback(oidc_http, with_query(url, state="forged"), "forged")
    assert forged.status_code == 401, forged.text


async def test_a_code_or_callback_cannot_be_used_twice(oidc_http, provider):
    subject = f"ops-{uuid.uuid4().hex[:8]}"
    provider.add_user(subject, ["admin"])
    started = await start_sign_in(oidc_http)
    url = await authorize(started.authorize_url, subject)
    assert (await callback(oidc_http, url, started.binding)).status_code == 303
    replayed = await callback(oidc_http, url, started.binding)
    assert replayed.status_code == 401 and "already used" in replayed.json()["message"], replayed.text
    # The same code under a fresh state of ours: the provider refuses a used code.
    fresh = await start_sign_in(oidc_http)
    code = parse_qs(urlsplit(url).query)["code"][0]
    reused = await callback(oidc_http, with_query(url, code=code, state=fresh.state), fresh.binding)
    assert reused.status_code == 401, reused.text
    assert "pika_admin_session" not in set_cookies(reused)


async def test_an_id_token_with_another_nonce_is_refused(oidc_http, provider):
    subject = f"ops-{uuid.uuid4().hex[:8]}"
    provider.add_user(subject, ["admin"])
    started = await start_sign_in(oidc_http)
    # The provider puts the nonce it was sent into the ID token: not the one we stored.
    url = await authorize(with_query(started.authorize_url, nonce="n-" + uuid.uuid4().hex), subject)
    refused = await callback(oidc_http, url, started.binding)
    assert refused.status_code == 401, refused.text
    assert "nonce" in refused.json()["message"]
    assert "pika_admin_session" not in set_cookies(refused)


async def test_a_code_issued_for_another_pkce_challenge_is_refused(oidc_http, provider):
    subject = f"ops-{uuid.uuid4().hex[:8]}"
    provider.add_user(subject, ["admin"])
    started = await start_sign_in(oidc_http)
    intercepted = with_query(started.authorize_url, code_challenge=s256("attacker-verifier-" + "x" * 40))
    refused = await callback(oidc_http, await authorize(intercepted, subject), started.binding)
    assert refused.status_code == 401, refused.text
    assert "refused the sign-in" in refused.json()["message"]


@pytest.mark.parametrize("next_path", ["https://evil.example/x", "//evil.example/x",
                                       "/\\evil.example", "javascript:alert(1)", "/other"])
async def test_next_never_leaves_the_service(oidc_http, provider, next_path):
    finished = await sign_in(oidc_http, provider, f"ops-{uuid.uuid4().hex[:8]}", next_path=next_path)
    assert finished.status_code == 303, finished.text
    assert finished.headers["location"] == CONSOLE_PATH


def test_safe_next_keeps_only_paths_of_the_service():
    assert safe_next("/payment/admin/console?q=1#x") == "/payment/admin/console?q=1#x"
    for bad in (None, "", "https://evil", "//evil", "/\\evil", "/payment/\\evil", "/payment//x\t",
                "http:/payment/x", "/payment/x\r\nSet-Cookie: a=b", "payment/admin"):
        assert safe_next(bad) == CONSOLE_PATH, bad


async def test_a_cookie_write_needs_the_sessions_csrf_token(dev_http):
    session_id, session = await dev_session(dev_http, f"ops-{uuid.uuid4().hex[:8]}")
    user = f"u-csrf-{uuid.uuid4().hex[:8]}"
    body = {"userId": user, "credits": 5, "reason": "goodwill"}
    for headers in ({}, {"X-CSRF-Token": "wrong-" + session["csrfToken"]}, {"X-CSRF-Token": ""}):
        refused = await dev_http.post("/payment/credits/grant", json=body,
                                      headers={**cookie(session_id), **headers})
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "PAY010" and "X-CSRF-Token" in refused.json()["message"]
    balance = await dev_http.get("/payment/credits/balance", params={"userId": user},
                                 headers=cookie(session_id))
    assert balance.status_code == 200 and balance.json()["total"] == 0, balance.text

    granted = await dev_http.post("/payment/credits/grant", json=body, headers={
        **cookie(session_id), "X-CSRF-Token": session["csrfToken"]})
    assert granted.status_code == 200, granted.text
    balance = await dev_http.get("/payment/credits/balance", params={"userId": user},
                                 headers=cookie(session_id))
    assert balance.json()["total"] == 5, balance.text
    # A bearer caller is unchanged: no CSRF token, and the header wins over any cookie.
    bearer = await dev_http.post("/payment/credits/grant", json=body,
                                 headers={**auth("ops-admin", "admin"), **cookie("not-a-session")})
    assert bearer.status_code == 200, bearer.text


async def test_sign_out_ends_the_session(dev_http):
    session_id, session = await dev_session(dev_http, f"ops-{uuid.uuid4().hex[:8]}")
    refused = await dev_http.post("/payment/admin/sign-out", headers=cookie(session_id))
    assert refused.status_code == 403, refused.text
    assert (await dev_http.get("/payment/admin/session", headers=cookie(session_id))).status_code == 200

    signed_out = await dev_http.post("/payment/admin/sign-out", headers={
        **cookie(session_id), "X-CSRF-Token": session["csrfToken"]})
    assert signed_out.status_code == 204, signed_out.text
    value, attributes = set_cookies(signed_out)["pika_admin_session"]
    assert value == "" and "max-age=0" in attributes, attributes
    gone = await dev_http.get("/payment/admin/session", headers=cookie(session_id))
    assert gone.status_code == 401 and gone.json()["code"] == "PAY009", gone.text
    flags = await dev_http.get("/payment/admin/fraud-flags/", headers=cookie(session_id))
    assert flags.status_code == 401, flags.text


async def test_an_expired_session_authenticates_nothing(dev_http, settings):
    session_id, _ = await dev_session(dev_http, f"ops-{uuid.uuid4().hex[:8]}")
    key = f"pika:admin:session:{hashlib.sha256(session_id.encode()).hexdigest()}"
    redis = Redis.from_url(settings.redis_url)
    try:
        ttl = await redis.ttl(key)
        assert 0 < ttl <= settings.admin_session_seconds, ttl
        record = json.loads(await redis.get(key))
        assert record["expiresAt"] <= time.time() + settings.admin_session_seconds + 1
        # Past its expiry while the key lingers (a clock ahead of Redis's): still refused.
        record["expiresAt"] = time.time() - 1
        await redis.set(key, json.dumps(record), keepttl=True)
    finally:
        await redis.aclose()
    assert (await dev_http.get("/payment/admin/session", headers=cookie(session_id))).status_code == 401
    assert (await dev_http.get("/payment/admin/fraud-flags/", headers=cookie(session_id))).status_code == 401


async def test_dev_sign_in_only_in_development_mode(dev_http, oidc_http):
    subject = f"dev-{uuid.uuid4().hex[:8]}"
    response = await dev_http.post("/payment/admin/dev-sign-in", json={"subject": subject})
    assert response.status_code == 200, response.text
    assert response.json()["subject"] == subject and response.json()["roles"] == ["admin"]
    _, attributes = set_cookies(response)["pika_admin_session"]
    assert {"httponly", "samesite=strict", "path=/payment"} <= set(attributes), attributes
    assert "secure" not in attributes, "development mode serves plain http"

    absent = await oidc_http.post("/payment/admin/dev-sign-in", json={"subject": subject})
    assert absent.status_code == 404, absent.text
    assert "pika_admin_session" not in set_cookies(absent)
    # And with no provider configured there is no sign-in to start.
    assert (await dev_http.get("/payment/admin/sign-in")).status_code == 404


async def test_signed_out_and_forged_cookies_get_401(oidc_http, http):
    for headers in ({}, cookie("forged-" + uuid.uuid4().hex)):
        response = await oidc_http.get("/payment/admin/session", headers=headers)
        assert response.status_code == 401 and response.json()["code"] == "PAY009", response.text
    forged = await http.get("/payment/admin/fraud-flags/", headers=cookie("forged"))
    assert forged.status_code == 401, forged.text


@pytest.fixture(scope="module")
def limited_dev_ingress(settings: Settings, worker, relay) -> Iterator[Ingress]:
    """Development mode with a per-user read limit of 3 a minute (own counters)."""
    started = start_ingress(settings.model_copy(update={
        "payment_dev_mode": True, "rate_limit_reads_per_minute": 3,
        "rate_limit_namespace": f"pika-test-{uuid.uuid4().hex[:8]}",
    }), "ingress-session-limits")
    yield started
    started.process.stop()


async def test_rate_limits_count_a_session_under_its_admin(limited_dev_ingress):
    async with httpx.AsyncClient(base_url=limited_dev_ingress.url, timeout=20) as http:
        first, _ = await dev_session(http, f"ops-{uuid.uuid4().hex[:8]}")
        other, _ = await dev_session(http, f"ops-{uuid.uuid4().hex[:8]}")
        statuses = [(await http.get("/payment/admin/fraud-flags/", headers=cookie(first))).status_code
                    for _ in range(4)]
        assert statuses[:3] == [200, 200, 200] and statuses[3] == 429, statuses
        over = await http.get("/payment/admin/fraud-flags/", headers=cookie(first))
        assert over.json()["code"] == "PAY011" and "user" in over.json()["message"], over.text
        # Another admin's session has its own bucket (the address limit is far away).
        assert (await http.get("/payment/admin/fraud-flags/", headers=cookie(other))).status_code == 200


async def test_id_tokens_are_checked_for_signature_issuer_audience_expiry_and_nonce(provider, settings):
    """The ID token checks on their own: the client discovers the real provider, then its
    key set is replaced by a key of ours, so the test can sign each kind of bad token."""
    client = OidcClient(settings.model_copy(update={
        "admin_oidc_issuer": provider.url, "admin_oidc_client_id": CLIENT_ID,
        "admin_oidc_redirect_url": "http://127.0.0.1:1/payment/admin/callback",
    }))
    await client.metadata()
    ours, stranger = (RSAKey.generate_key(2048, parameters={"kid": kid}) for kid in ("ours", "stranger"))
    now = int(time.time())
    good = {"iss": provider.url, "sub": "ops-carol", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
            "nonce": "n-1", "roles": ["admin"], "email": "carol@pika.example"}

    async def check(claims: dict[str, Any], key: RSAKey = ours, alg: str = "RS256") -> Any:
        client._keys = {"keys": [ours.as_dict(private=False)]}
        signed = jwt.encode({"alg": alg, "kid": key.kid}, claims, key)
        return await client._verified_claims(signed, nonce="n-1", access_token=None)

    claims = await check(good)
    identity = client._identity(claims)
    assert (identity.subject, identity.email, identity.roles) == ("ops-carol", "carol@pika.example",
                                                                  frozenset({"admin"}))
    bad_tokens = {
        "signed by a key the provider does not publish": (good, stranger),
        "another issuer": ({**good, "iss": "http://127.0.0.1:1"}, ours),
        "another audience": ({**good, "aud": "someone-else"}, ours),
        "expired": ({**good, "iat": now - 900, "exp": now - 600}, ours),
        "another nonce": ({**good, "nonce": "n-2"}, ours),
        "no nonce": ({k: v for k, v in good.items() if k != "nonce"}, ours),
    }
    for case, (bad, key) in bad_tokens.items():
        with pytest.raises(Unauthorized):
            await check(bad, key)
            pytest.fail(f"accepted an ID token {case}")
