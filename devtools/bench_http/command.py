"""`python -m devtools bench-http`: set up a private world, run the phases, print, clean up.

Exit codes: 0 when the run completed (goals met or not), 1 when it failed, a request
failed (non-2xx answers or socket errors) or the ledger did not reconcile after the
grants, 2 for bad arguments, 130 when interrupted.
"""

import argparse
import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

from devtools.bench.console import console
from devtools.bench.sandbox import Run, bench_settings, guarded, new_run, set_up
from devtools.bench_http.phases import Options, Results, bench_http
from devtools.bench_http.table import print_results
from devtools.stack import RUN_DIR
from services.settings import Settings

UNLIMITED = 1_000_000_000


def http_settings(settings: Settings, tag: str, kafka: str) -> Settings:
    """The charge bench's private settings (devtools.bench.sandbox), on `pika_benchhttp_<tag>`,
    with the rate limits lifted (every request of the bench is one client address) under
    a namespace of the run, and replies kept only for the run."""
    private = bench_settings(settings, tag, kafka)
    return private.model_copy(update={
        "database_url": urlunsplit(
            urlsplit(private.plain_database_url)._replace(path=f"/pika_benchhttp_{tag}")
        ),
        "topic_prefix": f"benchhttp-{tag}-",
        "rate_limit_namespace": f"benchhttp-{tag}",
        "rate_limit_reads_per_minute": UNLIMITED,
        "rate_limit_writes_per_minute": UNLIMITED,
        "rate_limit_ip_per_minute": UNLIMITED,
        "idempotency_ttl_seconds": 600,
    })


def set_up_and_run(run: Run, port: int, options: Options) -> Results:
    """The run's Redis (started when none answers), broker, database and topics, then the phases."""
    console.print(f"bench-http {run.tag}: tansu on 127.0.0.1:{port}, database pika_benchhttp_{run.tag}")
    run.stack.ensure_redis(run.settings.redis_url)
    set_up(run, port)
    return asyncio.run(bench_http(run, options))


def main(settings: Settings, args: argparse.Namespace) -> int:
    options = Options(seconds=float(args.seconds), users=int(args.users),
                      connections=int(args.connections), threads=int(args.threads),
                      grants=not args.no_grants)
    if min(options.seconds, options.users, options.threads) < 1 or options.connections < options.threads:
        console.print("[red]--seconds, --users, --threads must be >= 1 and --connections >= --threads[/red]")
        return 2
    run, port = new_run(lambda tag, kafka: http_settings(settings, tag, kafka))
    started = time.perf_counter()
    results, code = guarded(run, "bench-http", lambda: set_up_and_run(run, port, options))
    if results is None:
        return code
    print_results(results)
    console.print(f"total bench-http time {time.perf_counter() - started:.0f}s")
    failed = [f for f in results.figures.values() if f.wrk.non_2xx or f.wrk.socket_errors]
    if results.discrepancies:
        for line in results.discrepancies[:20]:
            console.print(f"[red]DISCREPANCY[/red] {line}")
        return 1
    if failed:
        console.print(f"[red]requests failed in: {', '.join(f.label for f in failed)}; "
                      f"logs kept in {RUN_DIR}[/red]")
        return 1
    for child in run.children:  # a good run's logs say nothing the table does not
        child.log.unlink(missing_ok=True)
    (RUN_DIR / f"tansu-{port}.log").unlink(missing_ok=True)
    return 0
