"""Start-up against a Kafka that never answers, and the worker's batch retries.

Both retry with tenacity (services/kafka_start.py, workers/ledger.py); these tests hold
the behaviour the library replaced: bounded, counted, logged, transient errors only.
"""

import contextlib
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from devtools.processes import free_port
from services.bootstrap import command_registry
from services.ledger.apply import is_transient
from services.metrics import BATCH_RETRIES
from tests.conftest import ROOT, ChildProcess, settings_env
from workers import ledger


def test_ingress_with_no_kafka_exits_non_zero_with_a_clear_message_and_never_serves(settings):
    closed, port, metrics_port = free_port(), free_port(), free_port()
    servers = f"127.0.0.1:{closed}"
    own = settings.model_copy(update={
        "kafka_bootstrap_servers": servers, "kafka_startup_timeout_seconds": 3.0,
        "payment_service_port": port, "payment_service_host": "127.0.0.1",
        "ingress_metrics_port": metrics_port, "ingress_metrics_host": "127.0.0.1",
    })
    url = f"http://127.0.0.1:{port}"
    child = ChildProcess("ingress", own, name="ingress-no-kafka").start()
    assert child.process is not None
    started, answers = time.monotonic(), []
    try:
        while child.process.poll() is None and time.monotonic() - started < 40:
            # Not listening counts as not ready for a load balancer; any answer must be 503.
            with contextlib.suppress(httpx.HTTPError):
                answers.append(httpx.get(f"{url}/payment/ready", timeout=1).status_code)
            time.sleep(0.2)
        child.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the ingress hung without Kafka:\n{child.log()[-3000:]}")
    finally:
        child.stop()
    assert child.process.returncode != 0, child.log()[-3000:]
    assert time.monotonic() - started < 40
    assert f"no Kafka broker at {servers} answered within 3 s" in child.log()
    assert all(status == 503 for status in answers), answers


async def test_a_failing_batch_is_retried_through_every_delay_then_raised(settings, monkeypatch):
    # A database that refuses connections: the transient failure of a Postgres restart.
    unreachable = settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/none"}
    )
    engine = create_async_engine(unreachable.async_database_url)
    monkeypatch.setattr(ledger, "RETRY_DELAYS", (0.01, 0.02, 0.03))
    before = BATCH_RETRIES._value.get()
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as failed:
            await ledger.apply_with_retries(engine, unreachable, [], command_registry())
    finally:
        await engine.dispose()
    assert is_transient(failed.value)
    assert BATCH_RETRIES._value.get() - before == 3, "one retry per delay, then it gives up"
    assert time.monotonic() - started >= 0.06


async def test_a_batch_that_applies_first_time_is_not_retried(settings, engine):
    before = BATCH_RETRIES._value.get()
    report = await ledger.apply_with_retries(engine, settings, [], command_registry())
    assert report.applied == 0
    assert BATCH_RETRIES._value.get() == before


def test_migrate_with_no_kafka_exits_1_naming_the_servers_within_the_bound(settings):
    servers = f"127.0.0.1:{free_port()}"
    own = settings.model_copy(
        update={"kafka_bootstrap_servers": servers, "kafka_startup_timeout_seconds": 2.0}
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "ops.cli", "migrate"], env=settings_env(own), cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"topic admin: no Kafka broker at {servers} answered within 2 s" in result.stderr
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr
    assert time.monotonic() - started < 30
