"""`python -m devtools bench-sockets`: the run's own world, the measurement, the report, cleanup.

Exit codes: 0 when the run completed (latency goal met or not), 1 when it failed (a
socket did not open or was closed, a delivery was missing, repeated or misdirected, a
service failed), 2 for bad arguments, 130 when interrupted.
"""

import argparse
import logging
import time
import uuid
import warnings

import uvloop
from jwt.warnings import InsecureKeyLengthWarning

from devtools.bench.console import console
from devtools.bench.sandbox import Run, bench_settings, run_sandboxed
from devtools.bench_sockets.phases import Options, measure
from devtools.bench_sockets.report import deliveries, print_report
from devtools.processes import free_port
from devtools.stack import RUN_DIR
from services.settings import Settings


def options_of(args: argparse.Namespace) -> Options | str:
    """The run's options, or why they are refused."""
    options = Options(int(args.sockets), int(args.users), float(args.seconds), int(args.burst),
                      float(args.peak) if args.peak is not None else None,
                      None if args.no_compression else "deflate")
    if min(options.sockets, options.users, options.seconds) <= 0 or options.users > options.sockets:
        return "--sockets, --users and --seconds must be positive, and --users at most --sockets"
    if options.peak is None and options.burst <= 0:
        return "--burst must be positive unless --peak is given"
    if options.peak is not None and options.peak <= 0:
        return "--peak must be positive"
    return options


def main(settings: Settings, args: argparse.Namespace) -> int:
    options = options_of(args)
    if isinstance(options, str):
        console.print(f"[red]{options}[/red]")
        return 2
    if "HS256" not in settings.jwt_algorithms:
        console.print("[red]bench-sockets mints HS256 tokens: PAYMENT_JWT_ALGORITHMS must allow them[/red]")
        return 2
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("pika.topics").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # The development secret is short; the tokens are this run's own, for its own ingress.
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    run = Run(bench_settings(settings, tag, f"127.0.0.1:{port}"), tag)
    started = time.perf_counter()
    measured = run_sandboxed("bench-sockets", run, port, lambda r: measure(r, options), uvloop.run)
    if isinstance(measured, int):
        return measured
    found = deliveries(measured)
    print_report(measured, found)
    console.print(f"total bench time {time.perf_counter() - started:.0f}s")
    if found.failed or measured.failed or measured.closed:
        console.print("[red]FAILED: every socket must get each of its user's events exactly once[/red]")
        return 1
    for path in [c.log for c in run.children] + [RUN_DIR / f"tansu-{port}.log"]:
        path.unlink(missing_ok=True)  # a good run's logs say nothing the table does not
    return 0
