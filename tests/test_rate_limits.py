"""Rate limits per user and per client address, on a running ingress with low limits."""

import asyncio
import time
import uuid

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import auth, start_ingress

IP_LIMIT = 8


def limited_ingress(settings, name: str, **more):
    limited = settings.model_copy(
        update={
            "rate_limit_writes_per_minute": 3,
            "rate_limit_reads_per_minute": 5,
            "rate_limit_ip_per_minute": IP_LIMIT,
            # Its own counters: the suite's other ingresses share this address and Redis.
            "rate_limit_namespace": f"pika-test-{uuid.uuid4().hex[:8]}",
            **more,
        }
    )
    return start_ingress(limited, name)


@pytest.fixture(scope="module")
def strict(settings, worker, relay):
    ingress = limited_ingress(settings, "ingress-rate-limited")
    yield ingress
    ingress.process.stop()


@pytest.fixture(scope="module")
def behind_proxy(settings, worker, relay):
    """The test client (127.0.0.1) plays the cluster's ingress controller."""
    ingress = limited_ingress(settings, "ingress-behind-proxy", trusted_proxies="127.0.0.1/32")
    yield ingress
    ingress.process.stop()


async def fresh_window() -> None:
    """Start a burst early in a one-minute window, so it is counted in one window."""
    if time.time() % 60 > 50:
        await asyncio.sleep(60 - time.time() % 60 + 0.1)


async def anonymous_reads(http: httpx.AsyncClient, forwarded: list[str]) -> list[int]:
    return [
        (await http.get("/payment/credits/balance", headers={"X-Forwarded-For": hop})).status_code
        for hop in forwarded
    ]


async def test_writes_over_the_user_limit_get_429_pay011_with_retry_after(strict, user_id):
    async with httpx.AsyncClient(base_url=strict.url, timeout=20) as http:
        admin = f"admin-{uuid.uuid4().hex[:6]}"
        body = {"userId": user_id, "credits": 1, "reason": "limit"}
        statuses = []
        for _ in range(4):
            response = await http.post(
                "/payment/credits/grant", json=body, headers=auth(admin, "admin")
            )
            statuses.append(response.status_code)
        assert statuses[:3] == [200, 200, 200]
        assert statuses[3] == 429
        assert response.json()["code"] == "PAY011"
        assert 1 <= int(response.headers["retry-after"]) <= 60
        balance = await http.get("/payment/credits/balance", headers=auth(user_id))
        assert balance.json()["total"] == 3, "the refused request changed nothing"
        other = await http.post(
            "/payment/credits/grant", json=body, headers=auth(f"{admin}-2", "admin")
        )
        assert other.status_code == 200, "another user has a window of their own"


async def test_the_client_address_limit_counts_anonymous_requests_and_health_is_exempt(strict):
    async with httpx.AsyncClient(base_url=strict.url, timeout=20) as http:
        codes = [
            (await http.get("/payment/credits/balance")).status_code for _ in range(10)
        ]
        assert 429 in codes and set(codes) <= {401, 429}
        assert (await http.get("/payment/health")).status_code == 200


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_no_bucket(strict):
    """Without TRUSTED_PROXIES every X-Forwarded-For is the client's own claim."""
    await fresh_window()
    spoofed = [f"203.0.113.{n}" for n in range(1, IP_LIMIT + 4)]
    async with httpx.AsyncClient(base_url=strict.url, timeout=20) as http:
        codes = await anonymous_reads(http, spoofed)
    assert codes.count(401) <= IP_LIMIT and codes[-3:] == [429, 429, 429], codes


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket(behind_proxy):
    await fresh_window()
    tag = uuid.uuid4().int % 200 + 1  # addresses of this run's own, in the documentation range
    real, other = f"198.51.100.{tag}", f"2001:db8::{tag:x}"
    async with httpx.AsyncClient(base_url=behind_proxy.url, timeout=20) as http:
        filled = await anonymous_reads(http, [real] * IP_LIMIT)
        assert filled == [401] * IP_LIMIT, "the proxy's address is not everyone's bucket"
        assert await anonymous_reads(http, [real]) == [429]
        assert await anonymous_reads(http, [other]) == [401], "another client, another bucket"
        # A client writing its own X-Forwarded-For: the proxy appends the real address.
        spoofed_chains = [f"203.0.113.{n}, {real}" for n in range(1, 4)]
        assert await anonymous_reads(http, spoofed_chains) == [429, 429, 429]


async def test_the_promo_abuse_source_is_the_same_client_address(behind_proxy, http, pack, engine):
    """Promo reservations record the forwarded client behind a trusted proxy, the peer
    otherwise: the promo-abuse rule counts accounts per this source."""
    admin = auth("promo-admin", "admin")
    code = f"edge{uuid.uuid4().hex[:8]}"
    created = await http.post("/payment/promo-codes/", headers=admin,
                              json={"code": code, "kind": "percentage", "percentOff": 10})
    assert created.status_code == 201, created.text
    forwarded = {"X-Forwarded-For": "203.0.113.77, 198.51.100.23"}
    sources = []
    for base in (behind_proxy.url, http.base_url):
        user = f"u-src-{uuid.uuid4().hex[:8]}"
        async with httpx.AsyncClient(base_url=str(base), timeout=20) as client:
            applied = await client.post(
                "/payment/promo-codes/apply", json={"code": code, "packId": pack["id"]},
                headers={**auth(user), **forwarded, "Idempotency-Key": str(uuid.uuid4())})
        assert applied.status_code == 200, applied.text
        async with engine.connect() as conn:
            sources.append(await conn.scalar(
                text("SELECT source FROM promo_reservations WHERE user_id = :u"), {"u": user}))
    assert sources == ["198.51.100.23", "127.0.0.1"]
