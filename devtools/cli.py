"""`python -m devtools`: the development toolkit's command line (never in the image).

The local stack, demo seed, development tokens, benchmarks and fault suite run from a
source checkout only; the production `pika-payment` command has none of them. Settings
are loaded and checked as `pika-payment` does (ops.cli.run_command): outside
PAYMENT_DEV_MODE the placeholder secrets are refused here too.
"""

import argparse
import asyncio
from collections.abc import Callable

from rich.console import Console

from ops.cli import run_command
from ops.job_report import progress_bar
from services.settings import Settings

PROG = "python -m devtools"
DESCRIPTION = "The development toolkit: local stack, demo seed, tokens, benchmarks, fault suite."
console = Console(stderr=True, soft_wrap=True)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from devtools.runner import run_stack

    return run_stack(settings, with_seed=not args.no_seed)


def cmd_seed(settings: Settings, _: argparse.Namespace) -> int:
    from devtools.seed import seed

    bar, update = progress_bar(console, "seeding")
    with bar:
        applied, present = asyncio.run(seed(settings, update))
    console.print(f"seed: {applied} commands applied, {present} already present")
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    """Mint an HS256 token, on a developer machine only.

    Whoever can run this with the production secret can make themselves admin without
    the identity provider knowing; outside dev mode tokens come from the issuer.
    """
    from devtools.tokens import make_token

    if not settings.payment_dev_mode:
        console.print(
            "[red]token: refusing outside development (PAYMENT_DEV_MODE is off): tokens come "
            "from the identity provider; set PAYMENT_DEV_MODE=true on a developer machine[/red]"
        )
        return 2
    if "HS256" not in settings.jwt_algorithms:
        console.print("[red]token: the service verifies RS256/ES256 tokens only "
                      "(PAYMENT_JWT_ALGORITHMS): mint them with the identity provider[/red]")
        return 2
    if args.ttl > settings.payment_jwt_max_lifetime_seconds:
        console.print(f"[red]token: --ttl exceeds PAYMENT_JWT_MAX_LIFETIME_SECONDS "
                      f"({settings.payment_jwt_max_lifetime_seconds}); the service would refuse it[/red]")
        return 2
    print(make_token(settings.payment_jwt_secret, args.sub, args.roles.split(","), args.ttl,
                     audience=settings.payment_jwt_audience, issuer=settings.payment_jwt_issuer))
    return 0


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from devtools.bench import main as bench_main

    return bench_main(settings, args)


def cmd_bench_sockets(settings: Settings, args: argparse.Namespace) -> int:
    from devtools.bench_sockets import main as bench_sockets_main

    return bench_sockets_main(settings, args)
def cmd_bench_http(settings: Settings, args: argparse.Namespace) -> int:
    from devtools.bench_http import main as bench_http_main

    return bench_http_main(settings, args)


def cmd_bench_reports(settings: Settings, args: argparse.Namespace) -> int:
    from devtools.bench.reports_bench import main as bench_reports_main

    return bench_reports_main(settings, args)


def cmd_faults(settings: Settings, args: argparse.Namespace) -> int:
    from devtools.faults import main as faults_main

    return faults_main(settings, args)


def cmd_ts_types(_settings: Settings, _: argparse.Namespace) -> int:
    from devtools.typescript_types import main as ts_types_main

    return ts_types_main()


def cmd_client_contracts(_settings: Settings, _: argparse.Namespace) -> int:
    from devtools.python_client_contracts import main as client_contracts_main

    return client_contracts_main()


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and flag carries `help=` (tests/test_cli.py checks it)."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help=f"what to run; `{PROG} COMMAND --help` for its flags")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        """A subcommand whose own --help starts with its one-line summary."""
        return sub.add_parser(name, help=text, description=text[:1].upper() + text[1:] + ".")

    run = command("run", "start the whole stack locally")
    run.add_argument("--no-seed", action="store_true", help="skip the demo seed after migrating")
    command("seed", "demo accounts and credits")
    tok = command("token", "print a development JWT (PAYMENT_DEV_MODE only)")
    tok.add_argument("--sub", required=True, help="the subject (user id) of the token")
    tok.add_argument("--roles", default="user", help="comma-separated roles (default: user)")
    tok.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default: 3600)")
    bench = command("bench", "end-to-end charge benchmark with baselines")
    bench.add_argument("--charges", type=int, default=20_000,
                       help="charges to send (default: 20000)")
    bench.add_argument("--users", type=int, default=2_000,
                       help="distinct users the charges spread over (default: 2000)")
    bench.add_argument("--workers", type=int, default=None,
                       help="ledger worker processes, one consumer group (default: one per core)")
    sockets = command("bench-sockets", "live-balance WebSocket fan-out on one ingress, Kafka -> socket")
    sockets.add_argument("--sockets", type=int, default=2_000,
                         help="WebSockets to open on the ingress (default: 2000)")
    sockets.add_argument("--users", type=int, default=500,
                         help="users the sockets belong to, sockets/users each (default: 500)")
    sockets.add_argument("--seconds", type=float, default=10.0,
                         help="length of the measured phase at half the peak (default: 10)")
    sockets.add_argument("--peak", type=float, default=None,
                         help="the worker's peak in charges/s; default: measured in a full-load burst")
    sockets.add_argument("--burst", type=int, default=8_000,
                         help="charges of the burst that measures the peak (default: 8000)")
    sockets.add_argument("--no-compression", action="store_true",
                         help="offer no permessage-deflate (browsers offer it, so the default does)")
    http = command("bench-http", "HTTP reads and waiting writes of the ingress against a bare "
                   "Litestar endpoint (needs wrk)")
    http.add_argument("--seconds", type=float, default=10.0,
                      help="measured seconds of each phase (default: 10)")
    http.add_argument("--users", type=int, default=500,
                      help="seeded users the requests spread over (default: 500)")
    http.add_argument("--connections", type=int, default=32,
                      help="wrk connections (default: 32)")
    http.add_argument("--threads", type=int, default=1, help="wrk threads (default: 1)")
    http.add_argument("--no-grants", action="store_true",
                      help="skip the write phase (no ledger worker or relay)")
    reports = command(
        "bench-reports", "the five reports over a seeded year of ledger, timed (target < 1 s)"
    )
    reports.add_argument("--transactions", type=int, default=1_000_000,
                         help="ledger transactions to load (default: 1000000)")
    reports.add_argument("--users", type=int, default=20_000,
                         help="users the transactions spread over (default: 20000)")
    reports.add_argument("--keep", action="store_true", help="keep the database at the end")
    faults = command("faults", "fault-injection suite")
    faults.add_argument("--short", action="store_true",
                        help="the short scenario set (the one make test runs)")
    command("ts-types", "regenerate the TypeScript types in clients/typescript/ (needs npm)")
    command("client-contracts",
            "copy schemas/ into the Python client's contracts (clients/python/)")
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "run": cmd_run,
    "seed": cmd_seed,
    "token": cmd_token,
    "bench": cmd_bench,
    "bench-http": cmd_bench_http,
    "bench-reports": cmd_bench_reports,
    "bench-sockets": cmd_bench_sockets,
    "faults": cmd_faults,
    "ts-types": cmd_ts_types,
    "client-contracts": cmd_client_contracts,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(COMMANDS[args.command], args)
