"""examples/booking_service.py, run as a platform team would run it, against the real
stack: hold, partial capture, cancellation, and a crash and retry of one booking that
the ledger applies once."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from services.settings import Settings
from tests.conftest import ChildProcess, Ingress, auth, token

pytestmark = pytest.mark.timeout(180)
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "booking_service.py"


def steps(output: str) -> list[dict[str, str]]:
    return [dict(field.split("=", 1) for field in line.split())
            for line in output.splitlines() if line.startswith("step=")]


async def test_the_booking_example_holds_captures_part_releases_and_survives_a_retry(
    settings: Settings, ingress: Ingress, worker: ChildProcess, relay: ChildProcess,
    http: httpx.AsyncClient,
):
    user = f"u-{uuid.uuid4().hex[:12]}"
    granted = await http.post("/payment/credits/grant", headers=auth("admin-1", "admin"),
                              json={"userId": user, "credits": 10, "reason": "example"})
    assert granted.status_code == 200, granted.text
    run = uuid.uuid4().hex[:8]
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "TOPIC_PREFIX": settings.topic_prefix, "PAYMENT_API_URL": ingress.url,
           "PAYMENT_SERVICE_TOKEN": token("example-booking-service", "service")}

    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(EXAMPLE), user, "--run", run], env=env,
        capture_output=True, text=True, timeout=150,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    seen = [(s["step"], s["booking"].rsplit("-", 1)[1], s["status"], s.get("available"), s.get("held"))
            for s in steps(done.stdout)]
    assert seen == [
        ("book", "yoga", "applied", "7", "3"),
        ("check-in", "yoga", "applied", "8", "0"),  # 2 of 3 charged, 1 back
        ("book", "spin", "applied", "6", "2"),
        ("cancel", "spin", "applied", "8", "0"),
        ("retry", "pilates", "applied", "7", "1"),
    ]
    # The retried booking got the first publish's answer, and the ledger holds one hold
    # for it, not two.
    balance = (await http.get("/payment/credits/balance", params={"userId": user},
                              headers=auth("admin-1", "admin"))).json()
    assert (balance["available"], balance["held"]) == (7, 1)
    history = (await http.get("/payment/credits/history",
                              params={"userId": user, "limit": 100},
                              headers=auth("admin-1", "admin"))).json()["items"]
    pilates = [item for item in history if item["reference"] == f"booking-{run}-pilates"]
    assert [item["type"] for item in pilates] == ["CREDIT_HOLD"]
    usage = [item for item in history if item["type"] == "CREDIT_USAGE"]
    assert [(item["reference"], item["heldCredits"]) for item in usage] == [(f"booking-{run}-yoga", -2)]
