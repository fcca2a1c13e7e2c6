"""The result table on stdout, and the notes that explain it on stderr."""

import math

from rich.console import Console
from rich.table import Table

from devtools.bench.bare_ceiling import BARE_CONNECTIONS
from devtools.bench.baselines import BASELINE_CONNECTIONS, SET_CHUNK
from devtools.bench.console import console
from devtools.bench.end_to_end import Phase
from devtools.bench.invariants import mean_rate
from devtools.bench.phases import Results

LATENCY_TARGET_MS = 150.0  # half-load p99, publish -> balance.changed (issue 14)


def _rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}/s"


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f} ms"


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def print_results(results: Results) -> None:
    full = results.full or Phase("", [])
    half = results.half or Phase("", [])
    ratio_a = full.rate / results.single_rate
    met_a = ratio_a >= 1.0
    met_p99 = half.p(0.99) < LATENCY_TARGET_MS
    yes, no = "[green]met[/green]", "[red]missed[/red]"
    table = Table(title="pika-payment bench: booking charges")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("note")
    table.add_row("charges (N)", f"{results.charges:,}", "per phase")
    table.add_row("users", f"{results.users:,}", "per phase, 3 funded batches each")
    table.add_row("end to end", _rate(full.rate), "publish -> worker -> outbox -> relay -> balance.changed")
    table.add_row(
        "baseline (a)",
        _rate(results.single_rate),
        f"1 tx per charge, asyncpg, {BASELINE_CONNECTIONS} connections",
    )
    table.add_row(
        "baseline (b)", _rate(results.set_rate), f"set-based raw SQL, asyncpg, {SET_CHUNK}/tx, 1 connection"
    )
    table.add_row(
        "baseline (d)",
        _rate(results.bare_rate),
        f"bare ceiling: fixed SQL, {SET_CHUNK}/statement, asyncpg, {BARE_CONNECTIONS} connections",
    )
    table.add_row(
        "diagnostic (c)",
        _rate(results.worker_code_rate),
        "worker's apply_commands without Kafka, 1 connection",
    )
    table.add_row("e2e / (a)", _ratio(ratio_a), f"target >= 1.0 {yes if met_a else no}")
    table.add_row("e2e / (b)", _ratio(full.rate / results.set_rate), "share of the set-based ceiling")
    table.add_row(
        "e2e / (d)", _ratio(full.rate / results.bare_rate), "share of the machine's ceiling (goal >= 0.16)"
    )
    table.add_row("e2e / (c)", _ratio(full.rate / results.worker_code_rate), "what Kafka + relay leave")
    with_rate = mean_rate([results.full, results.invariants_on_again])
    without_rate = mean_rate([results.invariants_off])
    table.add_row(
        "e2e without invariants", _rate(without_rate), "full load again, the 0011 invariant triggers disabled"
    )
    table.add_row(
        "e2e with invariants", _rate(with_rate), "mean of full load and a repeat after the 'without' phase"
    )
    table.add_row(
        "invariants: with / without",
        _ratio(with_rate / without_rate),
        "1.00 = free; below 1.00, what the triggers cost end to end",
    )
    table.add_row("full load p50", _ms(full.p(0.5)), "publish -> balance.changed, queueing included")
    table.add_row("full load p99", _ms(full.p(0.99)), f"max {_ms(full.p(1.0))}")
    half_rate = len(half.ids) / max(1e-9, half.last_published - half.first) if half.ids else math.nan
    table.add_row(
        "half load rate", _rate(half_rate), f"target {_rate(results.half_target)}, {len(half.ids):,} charges"
    )
    table.add_row("half load p50", _ms(half.p(0.5)), "")
    table.add_row(
        "half load p99",
        _ms(half.p(0.99)),
        f"target < {LATENCY_TARGET_MS:.0f} ms {yes if met_p99 else no}, max {_ms(half.p(1.0))}",
    )
    grants = results.grants or Phase("", [])
    mix = results.mix or Phase("", [])
    grant_ratio = grants.rate / full.rate
    table.add_row(
        "grants end to end", _rate(grants.rate),
        f"{len(grants.ids):,} goodwill grants, each user's first: account + batch",
    )
    table.add_row(
        "grants / e2e charges", _ratio(grant_ratio),
        f"goal >= 0.5 {yes if grant_ratio >= 0.5 else no}",
    )
    table.add_row(
        "mix end to end", _rate(mix.rate),
        f"{len(mix.ids):,} commands: grants, charges, holds, captures, releases",
    )
    table.add_row("mix p50 / p99", f"{_ms(mix.p(0.5))} / {_ms(mix.p(0.99))}", "as fast as possible: queueing")
    rss = max(results.worker_rss, default=0) / 2**20
    table.add_row(
        "worker RSS", f"{rss:,.0f} MB",
        f"largest of {len(results.worker_rss)} worker process(es) at the end; "
        f"goal < 200 MB {yes if 0 < rss < 200 else no}",
    )
    table.add_row("reconcile", str(len(results.discrepancies)), "discrepancies (all events sent required)")
    table.add_row("rejected commands", str(results.rejected), "must be 0")
    out = Console(highlight=False)
    if not out.is_terminal:  # a log file or a pipe: do not squeeze the table into 80 columns
        out = Console(highlight=False, width=120)
    out.print(table)
    for note in results.notes:
        console.print(f"  {note}")
