"""`pika-payment`: the one command line of the service."""

import argparse
import asyncio
import os
import sys
from collections.abc import Callable

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ops.logs import configure_logging
from services.errors import ConfigurationInvalid
from services.secrets_check import placeholder_secrets, refusal_message
from services.settings import Settings, get_settings

console = Console(stderr=True, soft_wrap=True)


def _progress_bar(label: str) -> tuple[Progress, Callable[[int, int | None], None]]:
    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), console=console)
    task = bar.add_task(label, total=None)

    def update(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    from ops.migrate import migrate
    from ops.topics import provision_topics

    migrate(settings)
    console.print("database migrated to head")
    created = asyncio.run(provision_topics(settings))
    console.print(f"topics ready (created: {', '.join(created) or 'none'})")
    return 0


def cmd_seed(settings: Settings, _: argparse.Namespace) -> int:
    from ops.seed import seed

    applied, present = asyncio.run(seed(settings))
    console.print(f"seed: {applied} commands applied, {present} already present")
    return 0


def cmd_ingress(settings: Settings, _: argparse.Namespace) -> int:
    import uvicorn

    from ingress.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.payment_service_host,
        port=settings.payment_service_port,
        log_config=None,
        access_log=False,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default; the ingress
        # decides who the client is itself, from TRUSTED_PROXIES (ingress.client_address).
        proxy_headers=False,
    )
    return 0


def cmd_worker(settings: Settings, _: argparse.Namespace) -> int:
    from workers.main import run_ledger_worker

    asyncio.run(run_ledger_worker(settings))
    return 0


def cmd_relay(settings: Settings, _: argparse.Namespace) -> int:
    from workers.main import run_relay_process

    asyncio.run(run_relay_process(settings))
    return 0


def cmd_notify(settings: Settings, _: argparse.Namespace) -> int:
    from workers.main import run_notify_worker

    asyncio.run(run_notify_worker(settings))
    return 0


def cmd_remind(settings: Settings, _: argparse.Namespace) -> int:
    from ops.remind import publish_reminders
    from services.db import make_engine

    async def go() -> tuple[int, int]:
        engine = make_engine(settings, pool_size=1)
        try:
            return await publish_reminders(engine, settings)
        finally:
            await engine.dispose()

    users, batches = asyncio.run(go())
    console.print(f"remind: {users} reminders published covering {batches} expiring batches")
    return 0


def cmd_expire(settings: Settings, _: argparse.Namespace) -> int:
    from ops.expire import publish_expiries
    from services.db import make_engine

    async def go() -> int:
        engine = make_engine(settings, pool_size=1)
        bar, update = _progress_bar("publishing expiry commands")
        try:
            with bar:
                return await publish_expiries(engine, settings, update)
        finally:
            await engine.dispose()

    count = asyncio.run(go())
    console.print(f"expire: {count} commands published")
    return 0


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from services.db import make_engine
    from services.ledger.reconcile import reconcile

    async def go() -> list[object]:
        engine = make_engine(settings, pool_size=1)
        bar, update = _progress_bar("checking accounts")
        try:
            with bar:
                return list(
                    await reconcile(
                        engine, progress=update, require_events_sent=args.require_events_sent
                    )
                )
        finally:
            await engine.dispose()

    if args.stripe:
        fixed = _reconcile_stripe(settings, args.since, args.dry_run)
        if fixed:
            return fixed
    found = asyncio.run(go())
    for discrepancy in found:
        console.print(f"[red]DISCREPANCY[/red] {discrepancy}")
    if found:
        console.print(f"reconcile: {len(found)} discrepancies")
        return 1
    console.print("reconcile: ledger consistent (0 discrepancies)")
    return 0


def _reconcile_stripe(settings: Settings, since: str | None, dry_run: bool) -> int:
    """Grant purchases whose webhook was lost; non-zero if a fix did not apply."""
    from datetime import UTC, datetime, timedelta

    from ops.stripe_reconcile import Fix, reconcile_stripe
    from services.db import make_engine

    start = (
        datetime.fromisoformat(since).replace(tzinfo=UTC)
        if since
        else datetime.now(UTC) - timedelta(days=3)
    )

    async def go() -> list[Fix]:
        engine = make_engine(settings, pool_size=1)
        bar, update = _progress_bar("listing Stripe payments")
        try:
            with bar:
                return await reconcile_stripe(
                    engine, settings, start, dry_run=dry_run, progress=lambda n: update(n, None)
                )
        finally:
            await engine.dispose()

    fixes = asyncio.run(go())
    for fix in fixes:
        console.print(
            f"stripe: purchase {fix.purchase_id} of {fix.user_id} ({fix.status}; "
            f"{fix.payment_intent_id}, {fix.amount_received} {fix.currency}) was missing: "
            f"{fix.outcome}"
        )
        for other in fix.also_paid_by:
            console.print(
                f"[yellow]stripe: purchase {fix.purchase_id} was also paid by {other}: "
                "a second payment, refund it in Stripe[/yellow]"
            )
    if dry_run:
        console.print(
            f"stripe: {len(fixes)} paid purchases since {start:%Y-%m-%d} would be confirmed "
            "(dry run: nothing published)"
        )
        return 0
    console.print(
        f"stripe: {len(fixes)} paid purchases were missing from the ledger since {start:%Y-%m-%d}"
    )
    return 0 if all(f.outcome in ("applied", "already granted") for f in fixes) else 1


def cmd_stripe_sync(settings: Settings, _: argparse.Namespace) -> int:
    from ingress.stripe_provider import StripeProvider
    from services.db import make_engine
    from services.memberships.plan_sync import sync_plans
    from services.purchases.product_sync import sync_products

    async def go() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        engine = make_engine(settings, pool_size=1)
        try:
            provider = StripeProvider(settings)
            return await sync_products(engine, provider), await sync_plans(engine, provider)
        finally:
            await engine.dispose()

    packs, plans = asyncio.run(go())
    for line in packs:
        made = "new price" if line["new_price"] else "price unchanged"
        console.print(f"{line['pack_id']}: product {line['product_id']}, {line['price_id']} ({made})")
    for line in plans:
        made = "new plan" if line["new_plan"] else "plan unchanged"
        console.print(
            f"plan {line['plan_id']}: product {line['product_id']}, {line['stripe_plan_id']} ({made})"
        )
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    """Mint an HS256 token, on a developer machine only.

    Whoever can run this with the production secret can make themselves admin without
    the identity provider knowing; outside dev mode tokens come from the issuer.
    """
    from ops.tokens import make_token

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


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from ops.runner import run_stack

    return run_stack(settings, with_seed=not args.no_seed)


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from ops.bench import main as bench_main

    return bench_main(settings, args)


def cmd_bench_reports(settings: Settings, args: argparse.Namespace) -> int:
    from ops.bench.reports import main as bench_reports_main

    return bench_reports_main(settings, args)


def cmd_faults(settings: Settings, args: argparse.Namespace) -> int:
    from ops.faults import main as faults_main

    return faults_main(settings, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pika-payment", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the whole stack locally").add_argument(
        "--no-seed", action="store_true"
    )
    sub.add_parser("ingress", help="serve the HTTP API")
    sub.add_parser("worker", help="apply commands to the ledger")
    sub.add_parser("relay", help="publish outbox events")
    sub.add_parser("migrate", help="migrate the database and create topics")
    sub.add_parser("seed", help="demo accounts and credits")
    sub.add_parser("expire", help="publish expiry commands for due batches and holds")
    sub.add_parser("notify", help="send email receipts and notices from payment.events")
    sub.add_parser("remind", help="publish reminders of credits expiring soon (daily)")
    rec = sub.add_parser(
        "reconcile",
        help="check the ledger invariants",
        description="Check the ledger invariants (exit 1 naming each discrepancy). With "
        "--stripe, first grant the purchases Stripe says were paid but the ledger missed "
        "(a lost webhook): succeeded PaymentIntents since --since are matched to our "
        "pending or failed purchases by the purchaseId in their metadata and confirmed "
        "through the ledger worker, which grants each purchase at most once.",
    )
    rec.add_argument("--require-events-sent", action="store_true",
                     help="also fail when outbox rows are unsent")
    rec.add_argument("--stripe", action="store_true",
                     help="first grant succeeded Stripe payments the ledger missed")
    rec.add_argument("--since", metavar="YYYY-MM-DD",
                     help="with --stripe: payments created since this day, UTC (default: 3 days ago)")
    rec.add_argument("--dry-run", action="store_true",
                     help="with --stripe: list the purchases that would be confirmed, publish nothing")
    sub.add_parser("stripe-sync", help="create or update the Stripe Products and Prices of the packs")
    tok = sub.add_parser("token", help="print a development JWT (PAYMENT_DEV_MODE only)")
    tok.add_argument("--sub", required=True)
    tok.add_argument("--roles", default="user")
    tok.add_argument("--ttl", type=int, default=3600)
    bench = sub.add_parser("bench", help="end-to-end charge benchmark with baselines")
    bench.add_argument("--charges", type=int, default=20_000)
    bench.add_argument("--users", type=int, default=2_000)
    reports = sub.add_parser(
        "bench-reports", help="the five reports over a seeded year of ledger, timed (target < 1 s)"
    )
    reports.add_argument("--transactions", type=int, default=1_000_000)
    reports.add_argument("--users", type=int, default=20_000)
    reports.add_argument("--keep", action="store_true", help="keep the database at the end")
    faults = sub.add_parser("faults", help="fault-injection suite")
    faults.add_argument("--short", action="store_true")
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "run": cmd_run,
    "ingress": cmd_ingress,
    "worker": cmd_worker,
    "relay": cmd_relay,
    "migrate": cmd_migrate,
    "seed": cmd_seed,
    "expire": cmd_expire,
    "notify": cmd_notify,
    "remind": cmd_remind,
    "reconcile": cmd_reconcile,
    "stripe-sync": cmd_stripe_sync,
    "token": cmd_token,
    "bench": cmd_bench,
    "bench-reports": cmd_bench_reports,
    "faults": cmd_faults,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "reconcile" and not args.stripe and (args.dry_run or args.since):
        parser.error("reconcile: --since and --dry-run go with --stripe")
    try:
        settings = get_settings()
    except ValidationError as error:
        # Only the messages: pydantic's own text quotes the input, secrets included.
        for problem in error.errors():
            console.print(f"[red]configuration: {problem['msg']}[/red]")
        return 2
    except ConfigurationInvalid as error:
        console.print(f"configuration: {error.message}", style="red", markup=False)
        return 2
    configure_logging(os.environ.get("LOG_LEVEL", settings.log_level), settings.payment_service_name)
    problems = [] if settings.payment_dev_mode else placeholder_secrets(settings)
    if problems:
        console.print(refusal_message(problems), style="red", markup=False, highlight=False)
        return 2
    return COMMANDS[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
