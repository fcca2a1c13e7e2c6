"""The probe listener of the worker, relay and notify processes (/health, /ready, /metrics).

The kubelet's probes and Prometheus call these on METRICS_PORT (k8s/base); here the
real processes run against the real broker and Postgres, on topics of their own.
"""

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from devtools.processes import free_port
from ops.topics import provision_topics
from schemas.commands import GrantCredits, GrantPayload
from services.settings import Settings
from tests.conftest import ChildProcess, publish, wait_processed
from workers.probes import ProbeServer


@pytest.fixture
async def isolated(settings: Settings) -> Settings:
    """Settings with topics of their own, so these processes do not touch the session's."""
    own = settings.model_copy(update={"topic_prefix": f"probe-{uuid.uuid4().hex[:6]}-"})
    await provision_topics(own)
    return own


@contextmanager
def probed(command: str, settings: Settings) -> Iterator[tuple[str, ChildProcess]]:
    """A child process with its probe listener on a free port; yields its base URL."""
    port = free_port()
    child = ChildProcess(
        command, settings.model_copy(update={"metrics_port": port, "metrics_host": "127.0.0.1"}),
        name=f"{command}-probed",
    ).start()
    try:
        yield f"http://127.0.0.1:{port}", child
    finally:
        child.stop()


async def wait_for_status(
    url: str, status: int, child: ChildProcess, timeout: float = 60
) -> httpx.Response:
    """Poll `url` until it answers `status`; fail with the child's log otherwise."""
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                last = await client.get(url)
                if last.status_code == status:
                    return last
            except httpx.TransportError:
                pass
            assert child.process and child.process.poll() is None, child.log()[-3000:]
            await asyncio.sleep(0.3)
    answered = f"{last.status_code} {last.text}" if last else "nothing"
    raise AssertionError(f"{url} never answered {status} (last: {answered})\n{child.log()[-3000:]}")


async def test_worker_is_live_ready_once_consuming_and_scraped(isolated, engine, producer, user_id):
    with probed("worker", isolated) as (url, child):
        health = await wait_for_status(f"{url}/health", 200, child)
        assert health.json() == {"status": "ok"}
        ready = await wait_for_status(f"{url}/ready", 200, child)
        assert ready.json() == {"status": "ok", "checks": {"consumer": "ok", "postgres": "ok"}}
        grant = GrantCredits(user_id=user_id, payload=GrantPayload(credits=5, reason="probe"))
        await publish(producer, isolated, grant)
        await wait_processed(engine, [grant.id])
        async with httpx.AsyncClient(timeout=5) as client:
            metrics = await client.get(f"{url}/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        assert any(
            line.startswith("payment_commands_total{") and 'type="credits.grant"' in line
            for line in metrics.text.splitlines()
        ), metrics.text[:2000]


async def test_relay_and_notify_are_ready_when_postgres_answers(isolated):
    with probed("relay", isolated) as (relay_url, relay), probed("notify", isolated) as (
        notify_url, notify,
    ):
        relay_ready = await wait_for_status(f"{relay_url}/ready", 200, relay)
        assert relay_ready.json()["checks"] == {"postgres": "ok"}
        notify_ready = await wait_for_status(f"{notify_url}/ready", 200, notify)
        assert notify_ready.json()["checks"] == {"consumer": "ok", "postgres": "ok"}
        async with httpx.AsyncClient(timeout=5) as client:
            for url in (relay_url, notify_url):
                assert (await client.get(f"{url}/health")).status_code == 200
                assert "payment_" in (await client.get(f"{url}/metrics")).text


async def test_a_worker_whose_database_is_unreachable_is_live_but_not_ready(isolated):
    """A database that does not exist stands for an unreachable one (the shared
    Postgres keeps running): the process lives, /ready answers 503 naming Postgres,
    and it answers at once rather than hanging the kubelet's probe."""
    absent = isolated.database_url.rsplit("/", 1)[0] + f"/absent_{uuid.uuid4().hex[:8]}"
    with probed("worker", isolated.model_copy(update={"database_url": absent})) as (url, child):
        assert (await wait_for_status(f"{url}/health", 200, child)).json() == {"status": "ok"}
        started = time.monotonic()
        ready = await wait_for_status(f"{url}/ready", 503, child, timeout=10)
        assert time.monotonic() - started < 8
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["postgres"].startswith("unavailable: ")


async def test_the_probe_listener_answers_only_its_three_gets():
    """In-process, on a real socket: anything but GET of a known path is refused, and a
    readiness check that raises is "not ready", never a crash of the listener."""

    async def broken() -> dict[str, str]:
        raise ConnectionError("no database")

    port = free_port()
    server = ProbeServer("127.0.0.1", port, broken)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert (await client.post("/health")).status_code == 405
            assert (await client.get("/nowhere")).status_code == 404
            ready = await client.get("/ready")
            assert ready.status_code == 503
            assert ready.json() == {"status": "unavailable",
                                    "checks": {"ready": "unavailable: ConnectionError"}}
            assert (await client.get("/health?x=1")).json() == {"status": "ok"}
    finally:
        await server.stop()
