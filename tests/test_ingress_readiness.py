"""What each backend's failure does to the ingress's readiness (ingress.readiness).

Postgres or Kafka down takes a pod out of the Service (503); Redis down only degrades
it (200, `"redis": "down"`): reads work without Redis, and Redis is shared by every
replica, so failing on it would empty the Service on one Redis blip.
"""

from collections.abc import Iterator

import httpx
import pytest

from devtools.processes import free_port
from ingress.readiness import verdict
from services.settings import Settings
from tests.conftest import Ingress, auth, start_ingress


@pytest.fixture
def ingress_without_redis(settings: Settings) -> Iterator[Ingress]:
    """An ingress whose REDIS_URL names a port nobody listens on."""
    closed = free_port()
    started = start_ingress(
        settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed}/0"}),
        name="ingress-no-redis",
    )
    yield started
    started.process.stop()


def test_redis_down_leaves_the_ingress_ready_but_degraded(ingress_without_redis, user_id):
    url = ingress_without_redis.url
    ready = httpx.get(f"{url}/payment/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["redis"] == "down"
    assert body["checks"]["postgres"] == "ok"
    assert body["checks"]["kafka"] == "ok"
    assert body["checks"]["redis"].startswith("unavailable: ")
    # Why it stays in the Service: reads still answer without Redis.
    balance = httpx.get(f"{url}/payment/credits/balance", headers=auth(user_id), timeout=10)
    assert balance.status_code == 200, balance.text


@pytest.mark.parametrize("failing", ["postgres", "kafka"])
def test_postgres_or_kafka_down_makes_the_ingress_unready(failing: str):
    checks = {"postgres": "ok", "redis": "ok", "kafka": "ok", failing: "unavailable: OSError"}
    status, body = verdict(checks)
    assert status == 503
    assert body == {"status": "unavailable", "checks": checks}


def test_all_backends_up_is_plainly_ready():
    checks = {"postgres": "ok", "redis": "ok", "kafka": "ok"}
    assert verdict(checks) == (200, {"status": "ok", "checks": checks})
