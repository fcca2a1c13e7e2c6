"""The scheduled jobs of `pika-payment`: `expire`, `remind` and `reconcile` (with `--stripe`).

They run from CronJobs, so each fills a JobReport: human lines on stderr by default,
one JSON object on stdout with `--json`. Exit codes (kept from before `--json`):
0 done and consistent; 1 `reconcile` found a discrepancy, or `--stripe` could not apply
a fix (then the ledger check does not run: the fix must be looked at first).
"""

import argparse
import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rich.console import Console

from ops.job_report import DISCREPANCIES, FAILED, JobReport, progress_bar
from services.settings import Settings

if TYPE_CHECKING:
    from ops.stripe_reconcile import Fix
    from services.ledger.invariant_queries import Discrepancy

STRIPE_GRANTED = ("applied", "already granted")


def _finish(report: JobReport, console: Console, as_json: bool, lines: list[str]) -> int:
    if as_json:
        report.print_json()
    else:
        for line in lines:
            console.print(line)
    return 0 if report.outcome not in (DISCREPANCIES, FAILED) else 1


def run_expire(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from ops.expire import publish_expiries
    from services.db import make_engine

    report = JobReport("expire")

    async def go() -> int:
        engine = make_engine(settings, pool_size=1)
        bar, update = progress_bar(console, "publishing expiry commands", quiet=args.json)
        try:
            with bar:
                return await publish_expiries(engine, settings, update)
        finally:
            await engine.dispose()

    count = asyncio.run(go())
    report.counts["published"] = count
    return _finish(report, console, args.json, [f"expire: {count} commands published"])


def run_prune(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from ops.prune import Pruned, prune
    from services.db import make_engine

    report = JobReport("prune", details={"dry_run": args.dry_run})

    def progress(table: str, rows: int) -> None:
        if not args.json:
            console.print(f"prune: {table}: {rows} rows deleted so far")

    async def go() -> list[Pruned]:
        engine = make_engine(settings, pool_size=1)
        try:
            return await prune(engine, settings, dry_run=args.dry_run, progress=progress)
        finally:
            await engine.dispose()

    done = asyncio.run(go())
    verb = "would delete" if args.dry_run else "deleted"
    lines = [f"prune: {t.table}: {verb} {t.rows} rows {t.cutoff_of} {t.cutoff:%Y-%m-%d %H:%M} UTC"
             for t in done]
    summary = ", ".join(f"{t.rows} {t.table}" for t in done)
    lines.append(f"prune: {'dry run, nothing deleted; would delete' if args.dry_run else 'deleted'} "
                 f"{summary}")
    report.counts.update({t.table: t.rows for t in done})
    return _finish(report, console, args.json, lines)


def run_remind(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    from ops.remind_job import remind_once

    report = JobReport("remind")
    users, batches = asyncio.run(remind_once(settings))
    report.counts.update(reminders=users, batches=batches)
    line = f"remind: {users} reminders published covering {batches} expiring batches"
    return _finish(report, console, args.json, [line])


def run_reconcile(settings: Settings, args: argparse.Namespace, console: Console) -> int:
    report = JobReport("reconcile")
    lines: list[str] = []
    if args.stripe:
        _reconcile_stripe(settings, args, console, report, lines)
        if report.outcome == FAILED:
            return _finish(report, console, args.json, lines)
    found = asyncio.run(_ledger_discrepancies(settings, args.require_events_sent, console, args.json))
    report.counts["discrepancies"] = len(found)
    report.problems += [str(d) for d in found]
    lines += [f"[red]DISCREPANCY[/red] {d}" for d in found]
    if found:
        report.outcome = DISCREPANCIES
        lines.append(f"reconcile: {len(found)} discrepancies")
    else:
        lines.append("reconcile: ledger consistent (0 discrepancies)")
    return _finish(report, console, args.json, lines)


async def _ledger_discrepancies(
    settings: Settings, require_events_sent: bool, console: Console, quiet: bool
) -> "list[Discrepancy]":
    from services.db import make_engine
    from services.ledger.invariant_queries import reconcile

    engine = make_engine(settings, pool_size=1)
    bar, update = progress_bar(console, "checking accounts", quiet=quiet)
    try:
        with bar:
            return await reconcile(
                engine, progress=update, require_events_sent=require_events_sent,
                events_kept_days=settings.outbox_retention_days,
            )
    finally:
        await engine.dispose()


def _reconcile_stripe(
    settings: Settings,
    args: argparse.Namespace,
    console: Console,
    report: JobReport,
    lines: list[str],
) -> None:
    """Grant purchases whose webhook was lost; the report fails if a fix did not apply."""
    from ops.stripe_reconcile import reconcile_stripe
    from services.db import make_engine

    start = (
        datetime.fromisoformat(args.since).replace(tzinfo=UTC)
        if args.since
        else datetime.now(UTC) - timedelta(days=3)
    )

    async def go() -> "list[Fix]":
        engine = make_engine(settings, pool_size=1)
        bar, update = progress_bar(console, "listing Stripe payments", quiet=args.json)
        try:
            with bar:
                return await reconcile_stripe(
                    engine, settings, start, dry_run=args.dry_run,
                    progress=lambda n: update(n, None),
                )
        finally:
            await engine.dispose()

    fixes = asyncio.run(go())
    report.counts["stripe_missing"] = len(fixes)
    report.details["stripe"] = [
        {
            "purchase_id": str(fix.purchase_id), "user_id": fix.user_id, "status": fix.status,
            "payment_intent_id": fix.payment_intent_id, "amount_received": fix.amount_received,
            "currency": fix.currency, "outcome": fix.outcome, "also_paid_by": fix.also_paid_by,
        }
        for fix in fixes
    ]
    for fix in fixes:
        lines.append(
            f"stripe: purchase {fix.purchase_id} of {fix.user_id} ({fix.status}; "
            f"{fix.payment_intent_id}, {fix.amount_received} {fix.currency}) was missing: "
            f"{fix.outcome}"
        )
        for other in fix.also_paid_by:
            report.problems.append(f"purchase {fix.purchase_id} was also paid by {other}")
            lines.append(
                f"[yellow]stripe: purchase {fix.purchase_id} was also paid by {other}: "
                "a second payment, refund it in Stripe[/yellow]"
            )
    if args.dry_run:
        lines.append(
            f"stripe: {len(fixes)} paid purchases since {start:%Y-%m-%d} would be confirmed "
            "(dry run: nothing published)"
        )
        return
    lines.append(
        f"stripe: {len(fixes)} paid purchases were missing from the ledger since {start:%Y-%m-%d}"
    )
    unapplied = [f for f in fixes if f.outcome not in STRIPE_GRANTED]
    report.problems += [f"purchase {f.purchase_id} not granted: {f.outcome}" for f in unapplied]
    if unapplied:
        report.outcome = FAILED
