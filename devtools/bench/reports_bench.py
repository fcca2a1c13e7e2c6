"""`python -m devtools bench-reports`: the five reports over a seeded year of ledger, timed.

What it answers: "with 1 million ledger transactions seeded, each report answers in
under 1 s on this machine". It makes a throw-away database (`pika_bench_reports<tag>`,
the sandbox of `python -m devtools bench`), migrates it, bulk-loads N transactions over the
last 365 days with set-based SQL (devtools/bench/year_of_ledger.py says what and how), then
times each report of services/reports/queries.py over (a) the whole year by month and
(b) the last 90 days by day: one warm-up, then the median and max of 5 calls, each on
a fresh connection (connecting is not timed). The baseline, timed the same way, is one
full pass over the table: `SELECT count(*), sum(credits) FROM ledger_transactions`.

Exit codes: 0 when every report's median is under 1 s, 1 when one is not or the run
failed, 2 for bad arguments, 130 when interrupted. The database is dropped at the end
unless --keep.
"""

import argparse
import asyncio
import logging
import signal
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from devtools.bench.console import console
from devtools.bench.machine import background_load
from devtools.bench.phases import BUSY_WARNING
from devtools.bench.sandbox import Run, bench_settings, clean_up
from devtools.bench.sql import connect
from devtools.bench.year_of_ledger import Shape, counts, load, type_mix
from ops.migrate import migrate
from services.reports import queries
from services.settings import Settings

RUNS = 5
TARGET_MS = 1000.0
BASELINE = "SELECT count(*), sum(credits) FROM ledger_transactions"
Report = Callable[[AsyncConnection, queries.Range], Awaitable[Any]]
REPORTS: dict[str, Report] = {
    "revenue": lambda conn, period: queries.revenue(conn, period, "usd"),
    "credits": queries.credits,
    "packs": lambda conn, period: queries.packs(conn, period, "usd"),
    "churn": queries.churn,
    "promo_codes": queries.promo_codes,
}


@dataclass
class Timing:
    report: str
    range: str
    samples: list[float]  # ms

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def worst(self) -> float:
        return max(self.samples)


@dataclass
class Results:
    transactions: int
    users: int
    seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    mix: dict[str, int] = field(default_factory=dict)
    baseline: Timing | None = None
    timings: list[Timing] = field(default_factory=list)
    busy: float = 0.0


def ranges(now: datetime) -> dict[str, queries.Range]:
    """The two ranges: whole days in UTC, ending tomorrow at 00:00 so today is in both."""
    end = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "year, by month": queries.Range(end - timedelta(days=366), end, "month"),
        "90 days, by day": queries.Range(end - timedelta(days=90), end, "day"),
    }


async def _time(url: str, call: Callable[[AsyncConnection], Awaitable[Any]]) -> list[float]:
    """One warm-up then RUNS calls, each on a fresh connection; ms of each timed call."""
    engine = create_async_engine(url, poolclass=NullPool)
    samples: list[float] = []
    try:
        for i in range(RUNS + 1):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))  # the connection is up before the clock
                await conn.rollback()
                started = time.perf_counter()
                await call(conn)
                elapsed = (time.perf_counter() - started) * 1000
                await conn.rollback()
            if i:
                samples.append(elapsed)
    finally:
        await engine.dispose()
    return samples


async def measure(run: Run, results: Results) -> None:
    url = run.settings.async_database_url

    async def baseline(conn: AsyncConnection) -> None:
        (await conn.execute(text(BASELINE))).all()

    results.busy = await background_load(2.0)
    if results.busy > BUSY_WARNING:
        console.print(
            f"[yellow]warning: {results.busy:.2f} cores already busy; figures will be high[/yellow]"
        )
    console.print(f"[bold]measuring[/bold]: {len(REPORTS)} reports x 2 ranges, 1 warm-up + {RUNS} runs")
    results.baseline = Timing("baseline", "full pass", await _time(url, baseline))
    console.print(f"  baseline: median {results.baseline.median:.0f} ms")
    for label, period in ranges(datetime.now(UTC)).items():
        for name, report in REPORTS.items():

            async def call(conn: AsyncConnection, report: Report = report,
                           period: queries.Range = period) -> None:
                await report(conn, period)

            timing = Timing(name, label, await _time(url, call))
            results.timings.append(timing)
            console.print(f"  {name}, {label}: median {timing.median:.0f} ms, max {timing.worst:.0f} ms")


async def seed_and_measure(run: Run, results: Results) -> None:
    shape = Shape(results.transactions, results.users, time.time() - 365 * 86_400)
    console.print(
        f"[bold]loading[/bold]: {shape.users:,} users, {shape.transactions:,} transactions "
        f"over 365 days (one user's first grant every {shape.stride} slots)"
    )
    async with connect(run.settings) as conn:
        results.seconds = await load(conn, shape)
        results.rows = await counts(conn)
        results.mix = await type_mix(conn)
    await measure(run, results)


def print_results(results: Results) -> bool:
    """The table on stdout, the row counts and the mix under it; True when all are under 1 s."""
    base = results.baseline.median if results.baseline else float("nan")
    table = Table(title=f"pika-payment bench-reports: {results.rows.get('ledger_transactions', 0):,} "
                        "ledger transactions")
    for column, justify in (("report", "left"), ("range", "left"), ("median ms", "right"),
                            ("p max ms", "right"), ("/ baseline", "right"), ("under 1 s", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    if results.baseline:
        table.add_row("baseline", "count(*), sum(credits): one full pass", f"{base:,.0f}",
                      f"{results.baseline.worst:,.0f}", "1.00", "")
    ok = True
    for t in results.timings:
        under = t.median < TARGET_MS
        ok = ok and under
        table.add_row(t.report, t.range, f"{t.median:,.0f}", f"{t.worst:,.0f}", f"{t.median / base:.2f}",
                      "[green]yes[/green]" if under else "[red]no[/red]")
    out = Console(highlight=False)
    if not out.is_terminal:  # a log file or a pipe: do not squeeze the table into 80 columns
        out = Console(highlight=False, width=120)
    out.print(table)
    out.print("rows: " + ", ".join(f"{name} {n:,}" for name, n in results.rows.items()))
    total = sum(results.mix.values()) or 1
    out.print("mix: " + ", ".join(f"{t} {n / total:.1%}" for t, n in results.mix.items()))
    out.print(
        f"load {results.seconds.get('load', 0):.1f}s, "
        f"VACUUM (ANALYZE) {results.seconds.get('vacuum', 0):.1f}s; "
        f"median of {RUNS} runs after 1 warm-up, each on a fresh connection; "
        f"background load before measuring: {results.busy:.2f} cores busy"
    )
    return ok


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(settings: Settings, args: argparse.Namespace) -> int:
    transactions, users = int(args.transactions), int(args.users)
    if transactions <= 0 or users <= 0:
        console.print("[red]--transactions and --users must be positive[/red]")
        return 2
    users = min(users, transactions)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    tag = "reports" + uuid.uuid4().hex[:8]
    run = Run(bench_settings(settings, tag, settings.kafka_bootstrap_servers), tag)
    name = urlsplit(run.settings.plain_database_url).path.lstrip("/")
    results = Results(transactions, users)
    started = time.perf_counter()
    previous_term = signal.signal(signal.SIGTERM, _interrupt)  # a kill cleans up like Ctrl-C
    try:
        console.print(f"bench-reports {tag}: database {name}")
        run.database_created = True  # from here on, cleanup drops it (IF EXISTS)
        migrate(run.settings)  # asyncio.run inside: before this command's own event loop
        asyncio.run(seed_and_measure(run, results))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        return 130
    except Exception as error:
        console.print(f"[red]bench-reports failed: {type(error).__name__}: {error}[/red]")
        return 1
    finally:
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if args.keep:
                console.print(f"kept database {name}: {run.settings.plain_database_url}")
            else:
                clean_up(run)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)
    ok = print_results(results)
    console.print(f"total bench time {time.perf_counter() - started:.0f}s")
    if not ok:
        console.print(f"[red]a report's median is {TARGET_MS:.0f} ms or more[/red]")
    return 0 if ok else 1
