"""`python -m devtools bench`: set up a private world, run every phase, print the table, clean up.

Exit codes: 0 when the run completed (targets met or not), 1 when it failed or the
ledger did not reconcile, 2 for bad arguments, 130 when interrupted.
"""

import argparse
import os
import time

from devtools.bench.charges_table import print_results
from devtools.bench.console import console
from devtools.bench.phases import bench
from devtools.bench.sandbox import bench_settings, new_run, run_sandboxed
from devtools.stack import RUN_DIR
from services.settings import Settings


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
    run, port = new_run(lambda tag, kafka: bench_settings(settings, tag, kafka))
    run.workers = workers
    started = time.perf_counter()
    console.print(f"bench {run.tag}: {workers} ledger worker process(es)")
    results = run_sandboxed("bench", run, port, lambda r: bench(r, charges, users))
    if isinstance(results, int):
        return results
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
