"""`python -m devtools bench`: set up a private world, run every phase, print the table, clean up.

Exit codes: 0 when the run completed (targets met or not), 1 when it failed or the
ledger did not reconcile, 2 for bad arguments, 130 when interrupted.
"""

import argparse
import asyncio
import time

from devtools.bench.charges_table import print_results
from devtools.bench.console import console
from devtools.bench.phases import Results, bench
from devtools.bench.sandbox import bench_settings, guarded, new_run, set_up
from devtools.stack import RUN_DIR
from services.settings import Settings


def main(settings: Settings, args: argparse.Namespace) -> int:
    """`python -m devtools bench`: 0 when the run completed (targets met or not), 1 when it failed."""
    charges = int(args.charges)
    users = min(int(args.users), charges)
    if charges <= 0 or users <= 0:
        console.print("[red]--charges and --users must be positive[/red]")
        return 2
    run, port = new_run(lambda tag, kafka: bench_settings(settings, tag, kafka))
    tag = run.tag
    started = time.perf_counter()

    def work() -> Results:
        console.print(f"bench {tag}: tansu on 127.0.0.1:{port}, database pika_bench_{tag}")
        set_up(run, port)
        return asyncio.run(bench(run, charges, users))

    results, code = guarded(run, "bench", work)
    if results is None:
        return code
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
