"""`python -m devtools bench`: set up a private world, run every phase, print the table, clean up.

Exit codes: 0 when the run completed (targets met or not), 1 when it failed or the
ledger did not reconcile, 2 for bad arguments, 130 when interrupted.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid

from devtools.bench.charges_table import print_results
from devtools.bench.console import console
from devtools.bench.phases import bench
from devtools.bench.sandbox import Run, bench_settings, clean_up, set_up
from devtools.processes import free_port
from devtools.stack import RUN_DIR
from services.settings import Settings


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def default_workers(settings: Settings) -> int:
    """One ledger worker per core this process may use, at most one per partition: the
    worker alternates between Python and waiting for Postgres, so a second process
    keeps both busy (in production, replicas of the worker Deployment do the same)."""
    return max(1, min(len(os.sched_getaffinity(0)), settings.kafka_command_partitions))


def main(settings: Settings, args: argparse.Namespace) -> int:
    """`python -m devtools bench`: 0 when the run completed (targets met or not), 1 when it failed."""
    charges = int(args.charges)
    users = min(int(args.users), charges)
    workers = int(args.workers or default_workers(settings))
    if charges <= 0 or users <= 0 or workers <= 0:
        console.print("[red]--charges, --users and --workers must be positive[/red]")
        return 2
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("pika.topics").setLevel(logging.WARNING)
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    run = Run(bench_settings(settings, tag, f"127.0.0.1:{port}"), tag, workers=workers)
    started = time.perf_counter()
    previous_term = signal.signal(signal.SIGTERM, _interrupt)  # a kill cleans up like Ctrl-C
    try:
        console.print(
            f"bench {tag}: tansu on 127.0.0.1:{port}, database pika_bench_{tag}, "
            f"{workers} ledger worker process(es)"
        )
        set_up(run, port)
        results = asyncio.run(bench(run, charges, users))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return 130
    except Exception as error:
        console.print(f"[red]bench failed: {type(error).__name__}: {error}[/red]")
        for child in run.children:
            with contextlib.suppress(OSError):
                tail = child.log.read_text(errors="replace")[-1500:]
                console.print(f"--- {child.name} log tail ({child.log}) ---\n{tail}")
        return 1
    finally:
        # A second Ctrl-C or kill must not cut the cleanup short.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            clean_up(run)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)
    print_results(results)
    console.print(f"total bench time {time.perf_counter() - started:.0f}s")
    if results.discrepancies:
        for line in results.discrepancies[:20]:
            console.print(f"[red]DISCREPANCY[/red] {line}")
        return 1
    if results.rejected:
        console.print(f"[red]{results.rejected} commands were rejected: the workload is invalid[/red]")
        return 1
    # A good run's logs say nothing the table does not: keep .run/ for the failed ones.
    for path in [c.log for c in run.children] + [RUN_DIR / f"tansu-{port}.log"]:
        path.unlink(missing_ok=True)
    return 0
