"""The phases of one `make bench-http` run, in order, and the figures each leaves.

1. the bare Litestar endpoint (the floor), 2. `GET /payment/credits/balance`,
3. `GET /payment/credits/history?limit=20`, each driven by wrk for the same time with
the same connections after a short warm-up; then, with the ledger worker and the relay
started, 4. `POST /payment/credits/grant` with an admin token and a fresh
Idempotency-Key per request, each request waiting for the ledger's answer as a client
does. For each phase: requests/s, p50, p99, the ingress's CPU per request, and its
Postgres round trips per request (from its /metrics, ingress.db_metrics).
"""

import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from devtools import processes
from devtools.bench.children import Child, scrape, spawn, wait_started
from devtools.bench.console import console
from devtools.bench.machine import background_load, cpu_seconds
from devtools.bench.sandbox import Run
from devtools.bench_http.accounts import admin_token, fund_users, user_tokens, users
from devtools.bench_http.servers import get_json, start_bare, start_ingress
from devtools.bench_http.wrk import WrkResult, run_wrk, script
from devtools.stack import RUN_DIR
from services.db import make_engine
from services.ledger.invariant_queries import reconcile

WARM_UP_SECONDS = 2.0
TOKEN_TTL = 3600
ROUND_TRIPS = "payment_db_round_trips_total"
ANSWERED = "payment_http_requests_total"
SETTLE_POLLS = 40  # 40 x 0.25 s: longer than PAYMENT_REPLY_TIMEOUT's default 5 s
SETTLE_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Options:
    seconds: float
    users: int
    connections: int
    threads: int
    grants: bool


@dataclass
class Figure:
    label: str
    wrk: WrkResult
    cpu_ms: float = math.nan  # the server's CPU per request
    trips: dict[str, float] = field(default_factory=dict)  # Postgres round trips per request, by kind


@dataclass
class Results:
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    discrepancies: list[str] = field(default_factory=list)


def counters_of(child: Child) -> tuple[dict[str, float], float]:
    """The ingress's Postgres round trips so far by kind, and the HTTP requests it answered
    (`scrape` sums labels away, so the kinds are read here)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{child.metrics_port}/metrics", timeout=2) as r:
        text = r.read().decode()
    trips: dict[str, float] = {}
    answered = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == ROUND_TRIPS:
                trips[sample.labels["kind"]] = sample.value
            elif sample.name == ANSWERED:
                answered += sample.value
    return trips, answered


async def settled_counters(child: Child) -> tuple[dict[str, float], float]:
    """The counters once the server has answered the requests still running (wrk stops
    counting at its deadline; the server finishes them, queries included)."""
    trips, answered = await asyncio.to_thread(counters_of, child)
    for _ in range(SETTLE_POLLS):
        await asyncio.sleep(SETTLE_POLL_SECONDS)
        trips, now = await asyncio.to_thread(counters_of, child)
        if now == answered:
            break
        answered = now
    return trips, answered


def start_profiler(server: Child, prefix: str, seconds: float) -> subprocess.Popen[bytes] | None:
    """With PIKA_BENCH_PROFILE=<dir>, py-spy samples the server during the measured run and
    leaves <dir>/<phase>.txt (collapsed stacks, `-f raw`); figures drop by its overhead."""
    folder = os.environ.get("PIKA_BENCH_PROFILE")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not folder or not Path(py_spy).exists():
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = Path(folder).resolve() / f"{prefix}.txt"
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(server.process.pid), "--format", "raw", "--output", str(out),
         "--duration", str(max(1, round(seconds))), "--rate", "250", "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


async def measure(
    label: str, url: str, lua: str, server: Child, options: Options, run: Run, *, prefix: str
) -> Figure:
    """Warm up, then one measured wrk run against `url`; the server's CPU and round trips."""
    path = RUN_DIR / f"bench-http-{run.tag}-{prefix}.lua"
    path.write_text(lua)
    console.print(f"  {label}: warm-up {WARM_UP_SECONDS:.0f}s, then {options.seconds:.0f}s")
    await asyncio.to_thread(run_wrk, url, path, seconds=WARM_UP_SECONDS, connections=options.connections,
                            threads=options.threads, key_prefix=f"{run.tag}-{prefix}-warm")
    counting = server.metrics_port != 0
    before_trips, before_answered = await settled_counters(server) if counting else ({}, 0.0)
    before_cpu = cpu_seconds(server.process.pid) or 0.0
    profiler = start_profiler(server, prefix, options.seconds)
    result = await asyncio.to_thread(run_wrk, url, path, seconds=options.seconds,
                                     connections=options.connections, threads=options.threads,
                                     key_prefix=f"{run.tag}-{prefix}")
    cpu = (cpu_seconds(server.process.pid) or 0.0) - before_cpu
    if profiler is not None:
        await asyncio.to_thread(profiler.wait, 30)
    after_trips, after_answered = await settled_counters(server) if counting else ({}, 0.0)
    answered = max(1.0, after_answered - before_answered)  # with the stragglers wrk left
    trips = {k: (v - before_trips.get(k, 0.0)) / answered for k, v in after_trips.items()}
    per = max(1, result.requests)
    figure = Figure(label, result, cpu * 1000 / per, trips)
    path.unlink(missing_ok=True)
    console.print(f"    {result.rate:,.0f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
                  + (f", {result.non_2xx} non-2xx" if result.non_2xx else ""))
    return figure


async def bench_http(run: Run, options: Options) -> Results:
    """Every phase on the run's database, broker and processes; the caller cleans up."""
    settings = run.settings
    results = Results()
    busy = await background_load()
    results.notes.append(f"background load before the start: {busy:.2f} cores busy")
    if busy > 0.25:
        console.print(f"[yellow]the machine is busy ({busy:.2f} cores) before the start: "
                      "figures will be low[/yellow]")
    subjects = users(options.users)
    console.print(f"funding {len(subjects)} users (3 grants, a history page each)")
    await fund_users(settings, len(subjects))
    tokens = user_tokens(settings, subjects, TOKEN_TTL)

    ingress, base = await asyncio.to_thread(start_ingress, settings, run.tag)
    run.children.append(ingress)
    balance_url = f"{base}/payment/credits/balance"
    body = await asyncio.to_thread(get_json, balance_url, tokens[0])
    body_file = RUN_DIR / f"bench-http-{run.tag}-balance.json"
    body_file.write_bytes(body)
    bare, bare_url = await asyncio.to_thread(start_bare, body_file, run.tag)
    run.children.append(bare)
    console.print(f"ingress on {base}, bare app on {bare_url} (balance body {len(body)} bytes)")

    reads = script("/payment/credits/balance", tokens)
    results.figures["bare"] = await measure("bare Litestar", bare_url, script("/bare", tokens), bare,
                                            options, run, prefix="bare")
    results.figures["balance"] = await measure("balance", balance_url, reads, ingress, options, run,
                                               prefix="balance")
    history = script("/payment/credits/history?limit=20", tokens)
    results.figures["history"] = await measure("history", f"{base}/payment/credits/history?limit=20",
                                               history, ingress, options, run, prefix="history")
    body_file.unlink(missing_ok=True)
    if options.grants:
        await grants(run, options, results, ingress, base, subjects)
    return results


async def grants(
    run: Run, options: Options, results: Results, ingress: Child, base: str, subjects: list[str]
) -> None:
    """Authenticated grants that wait for the ledger's answer, worker and relay running."""
    settings = run.settings
    console.print("[bold]grants[/bold]: starting the ledger worker and the relay")
    children = [spawn(name, settings, run.tag) for name in ("worker", "relay")]
    run.children.extend(children)
    for child in children:
        await wait_started(child)
    bodies = [json.dumps({"userId": s, "credits": 1, "reason": "bench-http grant"}) for s in subjects]
    lua = script("/payment/credits/grant", [admin_token(settings, TOKEN_TTL)], bodies)
    cpu_before = {c.name: cpu_seconds(c.process.pid) or 0.0 for c in children}
    results.figures["grant"] = figure = await measure(
        "grant (waits for the ledger)", f"{base}/payment/credits/grant", lua, ingress, options, run,
        prefix="grant",
    )
    used = {c.name: (cpu_seconds(c.process.pid) or 0.0) - cpu_before[c.name] for c in children}
    results.notes.append(
        "grant phase (with its warm-up): "
        + ", ".join(f"{name} {seconds:.1f} CPU s" for name, seconds in used.items())
        + f"; {figure.wrk.pending} answered 202 pending (PAYMENT_REPLY_TIMEOUT)"
    )
    scraped = await asyncio.to_thread(scrape, children[0])
    console.print(f"  worker applied {scraped.get('payment_commands_total', 0):.0f} commands")
    for child in children:
        await asyncio.to_thread(processes.stop, child.process, 15)
    engine = make_engine(settings, pool_size=1)
    try:
        found = await reconcile(engine)
    finally:
        await engine.dispose()
    results.discrepancies = [str(d) for d in found]
