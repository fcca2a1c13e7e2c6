"""`main`: set up a private world, run the chosen scenarios, always clean up, print the table."""

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path
from types import FrameType

from aiokafka import AIOKafkaProducer
from rich.console import Console

from devtools.faults.context import Context
from devtools.faults.database import ReconnectingDb, drop_database, server_address, with_database
from devtools.faults.fleet import Fleet
from devtools.faults.load import Load
from devtools.faults.plan import FULL, SHORT, Plan
from devtools.faults.polling import wait_for
from devtools.faults.postgres import PgCluster
from devtools.faults.progress import progress, say
from devtools.faults.report import Result, render
from devtools.faults.scenarios import SCENARIOS, Scenario, run_scenario
from devtools.faults.topic_reader import TopicReader
from devtools.processes import free_port, port_open
from devtools.stack import RUN_DIR, Stack
from ops.migrate import migrate
from ops.topics import provision_topics
from services.db import ensure_database
from services.kafka_security import kafka_client_options
from services.settings import Settings


def private_settings(settings: Settings, database: str, kafka_port: int, tag: str) -> Settings:
    """`settings` pointed at the run's own database, broker and topics, with quick rebalances."""
    return settings.model_copy(update={
        "database_url": with_database(settings.plain_database_url, database),
        "kafka_bootstrap_servers": f"127.0.0.1:{kafka_port}",
        "topic_prefix": f"faults-{tag}-",
        "kafka_command_partitions": 6,
        "kafka_event_partitions": 6,
        "kafka_session_timeout_ms": 3000,
        "max_daily_transactions": 1_000_000,  # a fault run is not a limit test
        "kafka_heartbeat_interval_ms": 500,
        "metrics_port": 0,
    })


async def warm_up(ctx: Context) -> None:
    """Wait until the workers consume and a relay is active before any fault is injected."""
    load = Load(ctx, "warmup")
    grants = [load.queue.popleft() for _ in range(min(30, len(load.queue)))]
    futures = [await load.publish(command) for command in await load.with_evidence(grants)]
    await load.evidence_db.close()
    await asyncio.gather(*(f for group in futures for f in group))
    ids = list(load.sent)

    async def done() -> bool:
        rows = await ctx.db.fetch(
            "SELECT count(*) AS n FROM processed_commands WHERE command_id = ANY($1::uuid[])", ids)
        return int(rows[0]["n"]) == len(ids)

    if not await wait_for(done, 60):
        raise RuntimeError("the workers did not apply the warm-up commands within 60 s; see "
                           f"{ctx.fleet.workers[0].log_path.parent}")
    if not await wait_for(ctx.fleet.has_active_relay, 30):
        raise RuntimeError("no relay became active within 30 s")


async def run_suite(settings: Settings, plan: Plan, fleet: Fleet, rng: random.Random,
                    cluster: PgCluster | None, cluster_note: str, results: list[Result],
                    log_dir: Path, scenarios: list[Scenario]) -> None:
    """Start the clients and processes, then run the scenarios in order into `results`."""
    # Inside the loop, SIGTERM cancels the suite: every `finally` below then runs.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    created = await provision_topics(settings)
    say(f"topics created: {', '.join(created)}")
    fleet.start(settings, log_dir)
    say(f"started 2 workers and 2 relays (logs in {log_dir})")
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all",
                                linger_ms=5, max_batch_size=1024 * 1024)
    events = TopicReader(settings, settings.events_topic, settings.kafka_event_partitions)
    dlq = TopicReader(settings, settings.commands_dlq_topic, 1)
    db = ReconnectingDb(settings.plain_database_url)
    await producer.start()
    try:
        await events.start()
        await dlq.start()
        ctx = Context(settings, plan, fleet, producer, events, dlq, db, rng, cluster, cluster_note)
        await warm_up(ctx)
        say("workers and relay are up")
        for scenario in scenarios:
            results.append(await run_scenario(ctx, scenario))
    finally:
        await producer.stop()
        await events.stop()
        await dlq.stop()
        await db.close()


def _sigterm_as_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (e.g. a test's timeout) outside the event loop: like Ctrl-C, cleanup runs.

    It raises rather than re-sending SIGINT, which a shell's background job ignores.
    """
    raise KeyboardInterrupt


def _clean_up(fleet: Fleet, stack: Stack, cluster: PgCluster | None, admin_url: str,
              database: str) -> None:
    """Stop every child, leave Postgres running and drop the run's database."""
    say("stopping workers, relays and the broker; dropping the database")
    fleet.stop_all()
    for child in stack.children:  # memory-only broker: nothing to flush, no need to wait
        with contextlib.suppress(OSError):
            child.kill()
    stack.stop()
    if cluster is not None:
        cluster.ensure_running()
    try:
        asyncio.run(drop_database(admin_url, database))
    except Exception as error:
        say(f"[yellow]could not drop {database}: {error}[/yellow]")


def main(settings: Settings, args: argparse.Namespace) -> int:
    """Run the suite, print the table; 0 only if every scenario has no discrepancy."""
    plan = SHORT if args.short else FULL
    only = set(os.environ.get("FAULTS_ONLY", "abcd").replace(",", ""))  # e.g. FAULTS_ONLY=d
    scenarios = [scenario for scenario in SCENARIOS if scenario.key in only]
    seed = int(os.environ.get("FAULTS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:8]
    database = f"pika_faults_{tag}"
    admin_url = with_database(settings.plain_database_url, "postgres")
    host, pg_port = server_address(settings.plain_database_url)
    if not port_open(host, pg_port):
        progress.print(f"[red]faults: no Postgres answers on {host}:{pg_port} (DATABASE_URL)[/red]")
        return 2
    kafka_port = free_port()
    configured = private_settings(settings, database, kafka_port, tag)
    cluster, cluster_note = PgCluster.find(configured)
    say(f"fault suite ({'short' if args.short else 'full'}), seed {seed} (FAULTS_SEED); "
        f"database {database}; tansu on 127.0.0.1:{kafka_port}")
    stack, fleet, results = Stack(), Fleet(), list[Result]()
    log_dir = (RUN_DIR / f"faults-{tag}").resolve()
    started = time.monotonic()
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    aborted: str | None = None
    try:
        stack.start_tansu("127.0.0.1", kafka_port)
        asyncio.run(ensure_database(configured.plain_database_url))
        migrate(configured)  # (ensure_database again, then Alembic to head)
        log_dir.mkdir(parents=True, exist_ok=True)
        asyncio.run(run_suite(configured, plan, fleet, rng, cluster, cluster_note, results, log_dir,
                              scenarios))
    except (KeyboardInterrupt, asyncio.CancelledError):
        aborted = "interrupted"
        say("[yellow]interrupted: cleaning up[/yellow]")
    except Exception as error:
        aborted = f"aborted by {type(error).__name__}: {error}"
        progress.print_exception(max_frames=8)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the cleanup finish
        _clean_up(fleet, stack, cluster, admin_url, database)
        signal.signal(signal.SIGTERM, previous)
    out = Console(file=sys.stdout, width=max(170, progress.width), highlight=False)
    total = render(results, out) if results else 0
    ran = [r for r in results if not r.skipped]
    out.print(f"faults: {total} discrepancies in {len(ran)} scenarios run "
              f"({len(results) - len(ran)} skipped) in {time.monotonic() - started:.0f}s, seed {seed}")
    if aborted:
        out.print(f"[red]faults: {aborted}; child logs kept in {log_dir}[/red]")
        return 130 if aborted == "interrupted" else 1
    if total:
        out.print(f"child logs kept in {log_dir}")
        return 1
    if os.environ.get("FAULTS_KEEP_LOGS"):
        out.print(f"child logs kept in {log_dir} (FAULTS_KEEP_LOGS)")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)  # a clean run leaves nothing behind
        (RUN_DIR / f"tansu-{kafka_port}.log").unlink(missing_ok=True)
    return 0
