"""The HTTP edge on a running ingress: the Idempotency-Key in-flight window, sealed
replies in Redis, metrics off the public port, and a readiness check a flood cannot
multiply."""

import asyncio
import json
import time
import uuid

import httpx
import pytest
from redis.asyncio import Redis

from ingress.idempotency import (
    claim,
    fingerprint,
    idempotency_scope,
    in_flight_seconds,
    redis_key_of,
)
from ingress.readiness import READY_CACHE_SECONDS
from schemas.api import GrantRequest
from tests.conftest import auth, start_ingress

SHORT_REPLY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def short_timeout(settings, worker, relay):
    """An ingress whose requests can live only PAYMENT_REPLY_TIMEOUT = 1 s."""
    quick = settings.model_copy(update={"payment_reply_timeout": SHORT_REPLY_TIMEOUT})
    ingress = start_ingress(quick, "ingress-short-timeout")
    yield ingress
    ingress.process.stop()


@pytest.fixture
async def redis(settings):
    client = Redis.from_url(settings.redis_url)
    yield client
    await client.aclose()


async def test_a_dead_requests_key_is_free_again_after_the_in_flight_window(
    short_timeout, redis, user_id
):
    admin = f"admin-{uuid.uuid4().hex[:6]}"
    key = str(uuid.uuid4())
    body = {"userId": user_id, "credits": 4, "reason": "after a crash"}
    stored_key = redis_key_of(idempotency_scope(admin, "POST", "/payment/credits/grant"), key)
    window = in_flight_seconds(SHORT_REPLY_TIMEOUT)
    # The request that claimed the key died before it could answer or clear it.
    wire_body = GrantRequest.model_validate(body).model_dump(mode="json")
    assert await claim(redis, stored_key, fingerprint(wire_body), window)
    assert 0 < await redis.ttl(stored_key) <= window, "the marker lives a request's life"

    async with httpx.AsyncClient(base_url=short_timeout.url, timeout=20) as http:
        headers = {**auth(admin, "admin"), "Idempotency-Key": key}
        early = await http.post("/payment/credits/grant", json=body, headers=headers)
        assert early.status_code == 409 and early.json()["code"] == "PAY013", early.text
        deadline = time.monotonic() + window + 5
        while time.monotonic() < deadline:
            if not await redis.exists(stored_key):
                break
            await asyncio.sleep(0.5)
        retry = await http.post("/payment/credits/grant", json=body, headers=headers)
        assert retry.status_code in (200, 202), retry.text
        assert await redis.ttl(stored_key) > window, "the reply keeps IDEMPOTENCY_TTL_SECONDS"
        again = await http.post("/payment/credits/grant", json=body, headers=headers)
        assert again.headers.get("idempotent-replayed") == "true"
        balance = await http.get("/payment/credits/balance", headers=auth(user_id))
        assert balance.json()["total"] == 4, "granted once"


async def test_a_purchase_reply_is_stored_without_its_client_secret_in_clear(
    http, pack, redis, user_id
):
    key = str(uuid.uuid4())
    headers = {**auth(user_id), "Idempotency-Key": key}
    path = f"/payment/credit-packs/{pack['id']}/purchase"
    first = await http.post(path, json={"paymentMethodId": "pm_card_visa"}, headers=headers)
    assert first.status_code == 200, first.text
    secret = first.json()["clientSecret"]
    assert secret.startswith(first.json()["paymentIntentId"])

    raw = await redis.get(redis_key_of(idempotency_scope(user_id, "POST", path), key))
    assert raw is not None
    assert secret.encode() not in raw
    assert secret.split("_secret_")[1].encode() not in raw, "no part of the secret either"

    replay = await http.post(path, json={"paymentMethodId": "pm_card_visa"}, headers=headers)
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json()["clientSecret"] == secret
    assert replay.json() == first.json()


async def test_a_reply_that_no_longer_opens_runs_again_under_the_same_command(
    http, redis, user_id
):
    """A Redis value sealed under another key (STRIPE_SECRET_KEY rotated) is not trusted."""
    key = str(uuid.uuid4())
    headers = {**auth("admin-rotate", "admin"), "Idempotency-Key": key}
    body = {"userId": user_id, "credits": 2, "reason": "rotation"}
    first = await http.post("/payment/credits/grant", json=body, headers=headers)
    assert first.status_code == 200, first.text
    stored_key = redis_key_of(
        idempotency_scope("admin-rotate", "POST", "/payment/credits/grant"), key
    )
    stored = json.loads(await redis.get(stored_key))
    stored["sealed"] = stored["sealed"][:-8] + "AAAAAAAA"
    await redis.set(stored_key, json.dumps(stored), ex=60)
    again = await http.post("/payment/credits/grant", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["transactionId"] == first.json()["transactionId"]
    balance = await http.get("/payment/credits/balance", headers=auth(user_id))
    assert balance.json()["total"] == 2, "the ledger applied the command once"


async def test_metrics_are_not_public_and_the_scrape_port_serves_them(http, ingress):
    assert (await http.get("/metrics")).status_code == 404
    assert (await http.get("/metrics", headers=auth("ops", "admin"))).status_code == 404
    async with httpx.AsyncClient(timeout=5) as scraper:
        scraped = await scraper.get(ingress.metrics_url)
    assert scraped.status_code == 200
    assert "payment_http_requests_total" in scraped.text


def readiness_checks(scraped: str) -> float:
    (line,) = [
        line for line in scraped.splitlines() if line.startswith("payment_readiness_checks_total ")
    ]
    return float(line.split()[1])


async def test_a_flood_of_readiness_calls_costs_one_backend_check(http, ingress):
    async with httpx.AsyncClient(timeout=5) as scraper:
        await asyncio.sleep(READY_CACHE_SECONDS + 0.1)  # whatever ran before is stale now
        before = readiness_checks((await scraper.get(ingress.metrics_url)).text)
        answers = await asyncio.gather(*(http.get("/payment/ready") for _ in range(40)))
        after = readiness_checks((await scraper.get(ingress.metrics_url)).text)
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["checks"]["postgres"] for a in answers} == {"ok"}
    assert after - before == 1, "40 calls within the cache window, one check"
