"""`pika-payment`: the one command line of the service."""

import argparse
import asyncio
import os
import sys
from collections.abc import Callable

from pydantic import ValidationError
from rich.console import Console

from ops.job_report import FAILED, JobReport, progress_bar
from ops.logs import configure_logging
from services.errors import ConfigurationInvalid, DependencyUnavailable
from services.secrets_check import placeholder_secrets, refusal_message
from services.settings import Settings, get_settings
from services.tracing import setup_tracing

console = Console(stderr=True, soft_wrap=True)


def version_text() -> str:
    """The installed distribution's version and the command schema version it speaks.

    The schema version is what a producer must match (schemas/commands.py), so an
    operator comparing two deployments needs both.
    """
    from importlib.metadata import PackageNotFoundError, version

    from schemas.commands import SCHEMA_VERSION

    try:
        installed = version("pika-payment")
    except PackageNotFoundError:  # run from a source tree that was never installed
        installed = "unknown"
    return f"pika-payment {installed} (command schema {SCHEMA_VERSION})"


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    from ops.migrate import migrate
    from ops.topics import provision_topics

    migrate(settings)
    console.print("database migrated to head")
    if not settings.kafka_create_topics:
        console.print("topics: left to their operator (KAFKA_CREATE_TOPICS=false)")
        return 0
    created = asyncio.run(provision_topics(settings))
    console.print(f"topics ready (created: {', '.join(created) or 'none'})")
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
        # Live balances are ~300-byte JSON frames: permessage-deflate saves a few hundred
        # bytes per frame and costs ~45 KB of memory per socket and half the fan-out's CPU
        # (make bench-sockets: p99 86 -> 47 ms, 0.52 -> 0.28 ms of ingress CPU per event).
        ws_per_message_deflate=False,
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


def cmd_remind(settings: Settings, args: argparse.Namespace) -> int:
    from ops.job_commands import run_remind

    return run_remind(settings, args, console)


def cmd_expire(settings: Settings, args: argparse.Namespace) -> int:
    from ops.job_commands import run_expire

    return run_expire(settings, args, console)


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    from ops.job_commands import run_prune

    return run_prune(settings, args, console)


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from ops.job_commands import run_reconcile

    return run_reconcile(settings, args, console)


def cmd_stripe_sync(settings: Settings, _: argparse.Namespace) -> int:
    from adapters.stripe.client import StripeProvider
    from services.db import make_engine
    from services.memberships.plan_sync import sync_plans
    from services.purchases.product_sync import sync_products

    async def go() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        engine = make_engine(settings, pool_size=1)
        try:
            provider = StripeProvider(settings)
            packs_bar, packs_done = progress_bar(console, "packs")
            with packs_bar:
                packs = await sync_products(engine, provider, packs_done)
            plans_bar, plans_done = progress_bar(console, "plans")
            with plans_bar:
                return packs, await sync_plans(engine, provider, plans_done)
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


JSON_HELP = "print one JSON object on stdout (counts, outcome, problems, duration); no progress bar"


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and flag carries `help=` (tests/test_cli.py checks it)."""
    parser = argparse.ArgumentParser(prog="pika-payment", description=__doc__)
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the installed version and the command schema version")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to run; `pika-payment COMMAND --help` for its flags")

    def command(name: str, text: str, description: str | None = None) -> argparse.ArgumentParser:
        """A subcommand whose own --help starts with its one-line summary."""
        return sub.add_parser(
            name, help=text, description=description or text[:1].upper() + text[1:] + "."
        )

    command("ingress", "serve the HTTP API")
    command("worker", "apply commands to the ledger")
    command("relay", "publish outbox events")
    command("migrate", "migrate the database and create topics")
    expire = command("expire", "publish expiry commands for due batches and holds")
    expire.add_argument("--json", action="store_true", help=JSON_HELP)
    command("notify", "send email receipts and notices from payment.events")
    prune = command(
        "prune",
        "delete sent outbox rows, rejected command ids, Stripe webhook rows and email "
        "records past their retention",
        description="Delete, in batches of PRUNE_BATCH_SIZE rows per transaction: outbox rows "
        "sent more than OUTBOX_RETENTION_DAYS ago, rejected commands processed more than "
        "COMMAND_ID_RETENTION_DAYS ago, Stripe webhook inbox rows older than "
        "STRIPE_EVENT_RETENTION_DAYS, settled email claims (sent_notifications) older than "
        "NOTIFICATION_RETENTION_DAYS, expiry reminders of batches expired more than "
        "EXPIRY_REMINDER_RETENTION_DAYS ago. Applied commands, command evidence, unsent "
        "events and pending emails are never deleted.",
    )
    prune.add_argument("--dry-run", action="store_true",
                       help="print how many rows would go, delete nothing")
    prune.add_argument("--json", action="store_true", help=JSON_HELP)
    remind = command("remind", "publish reminders of credits expiring soon (daily)")
    remind.add_argument("--json", action="store_true", help=JSON_HELP)
    rec = command(
        "reconcile",
        "check the ledger invariants",
        description="Check the ledger invariants (exit 1 naming each discrepancy). With "
        "--stripe, first grant the purchases Stripe says were paid but the ledger missed "
        "(a lost webhook): succeeded PaymentIntents since --since are matched to our "
        "pending or failed purchases by the purchaseId in their metadata and confirmed "
        "through the ledger worker, which grants each purchase at most once. Exit 0: "
        "consistent; 1: a discrepancy, or a Stripe fix that did not apply; 2: configuration.",
    )
    rec.add_argument("--require-events-sent", action="store_true",
                     help="also fail when outbox rows are unsent")
    rec.add_argument("--stripe", action="store_true",
                     help="first grant succeeded Stripe payments the ledger missed")
    rec.add_argument("--since", metavar="YYYY-MM-DD",
                     help="with --stripe: payments created since this day, UTC (default: 3 days ago)")
    rec.add_argument("--dry-run", action="store_true",
                     help="with --stripe: list the purchases that would be confirmed, publish nothing")
    rec.add_argument("--json", action="store_true", help=JSON_HELP)
    command("stripe-sync", "create or update the Stripe Products and Prices of the packs")
    return parser


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "ingress": cmd_ingress,
    "worker": cmd_worker,
    "relay": cmd_relay,
    "migrate": cmd_migrate,
    "expire": cmd_expire,
    "notify": cmd_notify,
    "remind": cmd_remind,
    "prune": cmd_prune,
    "reconcile": cmd_reconcile,
    "stripe-sync": cmd_stripe_sync,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "reconcile" and not args.stripe and (args.dry_run or args.since):
        parser.error("reconcile: --since and --dry-run go with --stripe")
    return run_command(COMMANDS[args.command], args)


def run_command(handler: Callable[[Settings, argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Load and check the settings, then run `handler`: exit 2 on a bad configuration.

    Shared with the development toolkit's command line (devtools), so that its commands
    refuse placeholder secrets outside dev mode exactly as the product's do.
    """
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
    try:
        # Off unless OTEL_TRACES_EXPORTER names an exporter; the service name defaults
        # to pika-payment-<command> (docs/operations.md, "Tracing").
        setup_tracing(args.command)
    except ValueError as error:
        console.print(f"configuration: {error}", style="red", markup=False)
        return 2
    problems = [] if settings.payment_dev_mode else placeholder_secrets(settings)
    if problems:
        console.print(refusal_message(problems), style="red", markup=False, highlight=False)
        return 2
    report = JobReport(args.command)  # its clock starts with the command
    try:
        return handler(settings, args)
    except DependencyUnavailable as error:  # e.g. no Kafka broker within the start-up bound
        if getattr(args, "json", False):
            report.outcome, report.problems = FAILED, [error.message]
            report.print_json()
        else:
            console.print(f"{args.command}: {error.message}", style="red", markup=False)
        return 1

if __name__ == "__main__":
    sys.exit(main())
