"""The run's private world: its own database, broker, topics and child processes.

A bench never touches the developer's data, and two benches cannot see each other's
messages: each run gets a throw-away database (`pika_bench_<tag>`) and a tansu broker
of its own with its own topic prefix. Whatever happens (error, Ctrl-C), `clean_up`
stops what the run started and drops the database.
"""

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from devtools import processes
from devtools.bench.children import Child
from devtools.bench.console import console
from devtools.stack import Stack
from ops.migrate import migrate
from ops.topics import provision_topics
from services.settings import Settings

T = TypeVar("T")


def bench_settings(settings: Settings, tag: str, kafka: str) -> Settings:
    """A copy of `settings` on the bench's own database, broker and topics.

    Balance, amount and daily limits are lifted so any --charges/--users split can be
    funded; the short session timeout lets the worker join its group in ~1 s.
    """
    return settings.model_copy(
        update={
            "database_url": urlunsplit(
                urlsplit(settings.plain_database_url)._replace(path=f"/pika_bench_{tag}")
            ),
            "topic_prefix": f"bench-{tag}-",
            "kafka_bootstrap_servers": kafka,
            "kafka_session_timeout_ms": 3000,
            "kafka_heartbeat_interval_ms": 500,
            "max_credit_balance": 1_000_000_000,
            "max_daily_transactions": 1_000_000_000,
            "max_transaction_amount": 1_000_000_000,
            "metrics_port": 0,
        }
    )


@dataclass
class Run:
    """What one bench run started, and so must clean up."""

    settings: Settings
    tag: str
    stack: Stack = field(default_factory=Stack)
    children: list[Child] = field(default_factory=list)
    database_created: bool = False
    workers: int = 1  # ledger worker processes in the end-to-end phases (one group)


def new_run(settings_for: Callable[[str, str], Settings]) -> tuple[Run, int]:
    """A run with a fresh tag and a free port for its broker; `settings_for(tag, kafka)`
    gives its settings. Migration and topic chatter is kept off the console."""
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("pika.topics").setLevel(logging.WARNING)
    tag = uuid.uuid4().hex[:8]
    port = processes.free_port()
    return Run(settings_for(tag, f"127.0.0.1:{port}"), tag), port


def set_up(run: Run, port: int) -> None:
    """Start the run's broker on `port`, create and migrate its database, provision its topics."""
    run.stack.start_tansu("127.0.0.1", port)
    run.database_created = True  # from here on, cleanup drops it (IF EXISTS)
    migrate(run.settings)
    asyncio.run(provision_topics(run.settings))


async def drop_database(plain_url: str, patience: float = 30.0) -> None:
    """DROP ... WITH (FORCE), retried while the server restarts (it happens in fault tests)."""
    parts = urlsplit(plain_url)
    name = parts.path.lstrip("/")
    deadline = time.monotonic() + patience
    while True:
        try:
            conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")), timeout=5)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            finally:
                await conn.close()
        except (OSError, asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


def clean_up(run: Run) -> None:
    """Stop the children and the broker, drop the database; never raises."""
    for child in run.children:
        with contextlib.suppress(Exception):
            processes.stop(child.process, 15)
    for process in run.stack.children:  # memory storage: nothing is worth a 5 s SIGTERM wait
        with contextlib.suppress(Exception):
            processes.stop(process, 1)
    run.stack.children.clear()
    if run.database_created:
        name = urlsplit(run.settings.plain_database_url).path.lstrip("/")
        try:
            asyncio.run(drop_database(run.settings.plain_database_url))
            console.print(f"dropped database {name}")
        except Exception as error:
            console.print(f"[red]could not drop database {name}: {error}[/red]")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def guarded(run: Run, name: str, work: Callable[[], T]) -> tuple[T | None, int]:
    """`work()` (set-up and phases), then `clean_up` whatever happens: (its result, 0), or
    (None, 130) when interrupted (Ctrl-C or SIGTERM), (None, 1) when it failed (with
    the children's log tails)."""
    previous_term = signal.signal(signal.SIGTERM, _interrupt)  # a kill cleans up like Ctrl-C
    try:
        return work(), 0
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return None, 130
    except Exception as error:
        console.print(f"[red]{name} failed: {type(error).__name__}: {error}[/red]")
        for child in run.children:
            with contextlib.suppress(OSError):
                tail = child.log.read_text(errors="replace")[-1500:]
                console.print(f"--- {child.name} log tail ({child.log}) ---\n{tail}")
        return None, 1
    finally:
        # A second Ctrl-C or kill must not cut the cleanup short.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            clean_up(run)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)


def run_sandboxed(
    label: str,
    run: Run,
    port: int,
    measure: Callable[[Run], Coroutine[Any, Any, T]],
    runner: Callable[[Coroutine[Any, Any, T]], T] = asyncio.run,
) -> T | int:
    """Set up the run's world on `port`, run `measure` in it (with `runner`: asyncio's
    or uvloop's), clean up whatever happens (`guarded`): what `measure` returned, or
    the exit code 1 (failed) or 130 (interrupted)."""

    def work() -> T:
        console.print(f"{label} {run.tag}: tansu on 127.0.0.1:{port}, database pika_bench_{run.tag}")
        set_up(run, port)
        return runner(measure(run))

    result, code = guarded(run, label, work)
    return code if result is None else result
