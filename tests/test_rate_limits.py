"""Rate limits per user and per client address, on a running ingress with low limits."""

import uuid

import httpx
import pytest

from tests.conftest import auth, start_ingress


@pytest.fixture(scope="module")
def strict(settings, worker, relay):
    limited = settings.model_copy(
        update={
            "rate_limit_writes_per_minute": 3,
            "rate_limit_reads_per_minute": 5,
            "rate_limit_ip_per_minute": 8,
            # Its own counters: the suite's other ingresses share this address and Redis.
            "rate_limit_namespace": f"pika-test-{uuid.uuid4().hex[:8]}",
        }
    )
    ingress = start_ingress(limited, "ingress-rate-limited")
    yield ingress
    ingress.process.stop()


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
