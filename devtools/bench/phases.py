"""All phases of one run, in the order the package docstring gives, then the reconcile.

Every phase's users are funded before the first clock starts, so no phase pays for
another's setup; the notes each phase leaves explain its figures under the table.
"""

import asyncio
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from devtools import processes
from devtools.bench.bare_ceiling import baseline_bare
from devtools.bench.baselines import baseline_set, baseline_single
from devtools.bench.children import scrape_all, spawn, wait_started
from devtools.bench.console import console
from devtools.bench.end_to_end import Phase, latency_stages, run_e2e_phase
from devtools.bench.event_watch import EventWatch
from devtools.bench.evidence import record_evidence
from devtools.bench.funding import fund
from devtools.bench.invariants import cost_note, triggers_disabled
from devtools.bench.machine import CpuMeter, background_load, postgres_pids
from devtools.bench.sandbox import Run
from devtools.bench.sql import connect
from devtools.bench.worker_code import worker_code
from devtools.bench.workload import (
    Charge,
    credits_needed,
    funding_rounds,
    plan_charges,
    plan_grants,
    plan_mix,
)
from devtools.stack import RUN_DIR
from schemas.commands import CommandEnvelope, GrantCredits
from services.db import make_engine
from services.kafka_security import kafka_client_options
from services.ledger.invariant_queries import reconcile
from services.settings import Settings

PACED_SECONDS = 8.0  # half-load phase length: enough samples for a stable p99
PACED_MAX_FACTOR = 3  # the half-load phase may use up to 3 N charges (funded up front)
BARE_FACTOR = 3  # baseline (d) runs 3 N charges
BUSY_WARNING = 0.25  # cores busy before the start that make the figures suspect


@dataclass
class Results:
    """The figures of one run, and notes that explain them (CPU split, latency stages)."""

    charges: int
    users: int
    single_rate: float = math.nan
    set_rate: float = math.nan
    bare_rate: float = math.nan  # (d): the machine's ceiling, fixed SQL on tables of its own
    worker_code_rate: float = math.nan
    full: Phase | None = None
    half: Phase | None = None
    invariants_off: Phase | None = None  # full load again, the invariant triggers disabled
    invariants_on_again: Phase | None = None  # and once more with them on, after the "off" phase
    grants: Phase | None = None  # goodwill grants end to end, users without an account yet
    mix: Phase | None = None  # the fault suite's mix (grants, charges, holds, captures, releases)
    worker_rss: list[int] = field(default_factory=list)  # bytes, each worker process at the end
    half_target: float = math.nan
    rejected: int = 0
    discrepancies: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def mark_backlog_sent(settings: Settings) -> int:
    """Funding and baseline events are never published: only end-to-end events are.

    They are real outbox rows (reconcile checks they exist), but publishing them would
    put a backlog of ~100k events in front of the measured run. VACUUM afterwards, so
    the relay's partial index of unsent rows is as small as in a steady state.
    """
    async with connect(settings) as conn:
        status = await conn.execute("UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL")
        await conn.execute("VACUUM ANALYZE")
        return int(status.split()[-1])


async def count_rejected(settings: Settings) -> int:
    async with connect(settings) as conn:
        return int(await conn.fetchval("SELECT count(*) FROM processed_commands WHERE status <> 'applied'"))


def worker_report(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], wall: float
) -> str:
    def delta(process: str, name: str) -> float:
        return after.get(process, {}).get(name, 0.0) - before.get(process, {}).get(name, 0.0)

    batches = delta("worker", "payment_batch_size_count")
    commands = delta("worker", "payment_batch_size_sum")
    applying = delta("worker", "payment_batch_apply_seconds_sum")
    mean = commands / batches if batches else math.nan
    return (
        f"worker: {batches:.0f} batches, mean {mean:.0f} commands/batch, apply+commit {applying:.2f}s "
        f"of {wall:.2f}s ({applying / wall:.0%}); relay: "
        f"{delta('relay', 'payment_outbox_published_total'):.0f} events published"
    )


@dataclass
class MeasuredPhases:
    """The measured end-to-end phases: each one's CPU split, worker batches and latency stages.

    `metrics` holds the children's counters at the end of the last phase, the start of
    the next one's: the phases are measured back to back.
    """

    run: Run
    producer: AIOKafkaProducer
    watch: EventWatch
    meter: CpuMeter
    metrics: dict[str, dict[str, float]]
    notes: list[str]

    async def phase(
        self,
        name: str,
        label: str,
        commands: Sequence[Charge | CommandEnvelope],
        rate: float | None,
        timeout: float,
        topic: str | None = None,
    ) -> Phase:
        self.meter.begin()
        started = time.perf_counter()
        phase = await run_e2e_phase(
            label, self.producer, self.watch, self.run.settings, commands, rate, timeout, topic
        )
        wall = time.perf_counter() - started
        phase.cpu = self.meter.used()
        self.notes.append(f"{name} " + self.meter.report())
        before, self.metrics = self.metrics, await scrape_all(self.run.children)
        self.notes.append(f"{name} " + worker_report(before, self.metrics, wall))
        self.notes.append(await latency_stages(self.run.settings, phase, self.watch))
        return phase


@dataclass
class OtherLoads:
    """The phases after the charges: other command types through the same worker."""

    grants: list[GrantCredits]
    mix: list[CommandEnvelope]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (VmRSS), 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def end_to_end(
    run: Run,
    results: Results,
    warm_up: list[Charge],
    full_load: list[Charge],
    invariant_loads: tuple[list[Charge], list[Charge]],
    paced_cap: int,
    others: OtherLoads,
) -> None:
    """Start the worker and relay, warm up, then the full-load and half-load phases,
    then the grant and mixed phases (`others`).

    Between them, what the invariant triggers cost: `invariant_loads` (full-load
    workloads on fresh users) run with the triggers off, then on again; the full-load
    phase before and the "on" phase after frame the "off" one.
    """
    settings = run.settings
    console.print("[bold]end to end[/bold]: starting the worker and the relay")
    marked = await mark_backlog_sent(settings)
    console.print(f"  {marked} funding/baseline outbox rows marked sent without publishing; VACUUM ANALYZE")
    watch = EventWatch(settings)
    await watch.start()
    producer = AIOKafkaProducer(
        **kafka_client_options(settings),
        linger_ms=5,
        max_batch_size=512 * 1024,
        acks="all",
    )
    await producer.start()
    try:
        workers = [f"worker-{n}" for n in range(1, run.workers + 1)]
        for name in (*workers, "relay"):
            run.children.append(spawn(name, settings, run.tag))
        for child in run.children:
            await wait_started(child)
        console.print(f"  running; logs in {RUN_DIR}/bench-{run.tag}-*.log")
        await run_e2e_phase("warm-up (group join, caches)", producer, watch, settings, warm_up, None, 60)

        pids: dict[str, list[int]] = {"bench": [os.getpid()]}
        for child in run.children:
            pids.setdefault(child.role, []).append(child.process.pid)
        pids["tansu"] = [p.pid for p in run.stack.children]
        pids["postgres"] = await postgres_pids(settings)
        meter = CpuMeter(pids)
        measured = MeasuredPhases(run, producer, watch, meter, await scrape_all(run.children), results.notes)
        full = await measured.phase(
            "full load", "end to end, full load", full_load, None, max(60.0, results.charges / 300)
        )
        results.full = full

        off_load, on_load = invariant_loads
        timeout = max(60.0, results.charges / 300)
        async with triggers_disabled(settings):
            results.invariants_off = await measured.phase(
                "invariants off", "end to end, full load, invariant triggers off", off_load, None, timeout
            )
        results.invariants_on_again = await measured.phase(
            "invariants on", "end to end, full load, invariant triggers on again", on_load, None, timeout
        )
        results.notes.append(cost_note([full, results.invariants_on_again], results.invariants_off))

        results.half_target = full.rate / 2
        count = max(1, min(paced_cap, int(results.half_target * PACED_SECONDS)))
        results.half = await measured.phase(
            "half load", "end to end, half load", plan_charges("p", count, results.users),
            results.half_target, PACED_SECONDS * 3 + max(60.0, count / 300),
        )
        internal = settings.internal_commands_topic
        # Grants one by one ran at ~160/s here: give these phases time to show that rate.
        slow = max(120.0, len(others.grants) / 40, len(others.mix) / 40)
        results.grants = await measured.phase(
            "grants", "end to end, goodwill grants", others.grants, None, slow, internal
        )
        results.mix = await measured.phase(
            "mix", "end to end, the fault suite's mix", others.mix, None, slow, internal
        )
        results.worker_rss = [rss_bytes(c.process.pid) for c in run.children if c.role == "worker"]
    finally:
        await producer.stop()
        await watch.stop()
        for child in run.children:
            await asyncio.to_thread(processes.stop, child.process, 15)


async def bench(run: Run, charges: int, users: int) -> Results:
    """All phases on the run's database and broker; the caller cleans up."""
    settings = run.settings
    results = Results(charges, users)
    busy = await background_load()
    results.notes.append(f"background load before the start: {busy:.2f} cores busy")
    if busy > BUSY_WARNING:
        console.print(f"[yellow]warning: {busy:.2f} cores already busy; figures will be low[/yellow]")
    now = datetime.now(UTC)
    warm_users = min(users, 200)
    warm_count = min(1000, max(warm_users, charges // 10))
    paced_cap = PACED_MAX_FACTOR * charges
    # Users per phase; x and y: end to end with the invariant triggers off, then on again.
    spread = {"a": users, "b": users, "c": users, "e": users, "x": users, "y": users, "w": warm_users}
    # (d) funds its own tables (no ledger grants) and runs three times the charges: at its
    # rate one N would last under a second, too short to time.
    bare = plan_charges("d", BARE_FACTOR * charges, users)
    workloads = {phase: plan_charges(phase, charges, n) for phase, n in spread.items() if phase != "w"}
    workloads["w"] = plan_charges("w", warm_count, warm_users)
    console.print(
        f"[bold]funding[/bold]: users of phases a, b, c, e, x, y (and p, the half-load phase, for up to "
        f"{paced_cap} charges) x {users}, w (warm-up) x {warm_users}; 3 batches each"
    )
    funding = {
        phase: funding_rounds(phase, credits_needed(len(planned), spread[phase]), now)
        for phase, planned in workloads.items()
    }
    funding["p"] = funding_rounds("p", credits_needed(paced_cap, users), now)
    # Grants and the mix: half as many commands as a charge phase each; the mix's users
    # are funded for its charges and holds, its grants' users get an account from them.
    others = OtherLoads(plan_grants("g", charges // 2, users, now), [])
    others.mix, mix_need = plan_mix("m", charges // 2, users, now)
    funding["m"] = funding_rounds("m", mix_need, now)
    await fund(settings, funding)
    recorded = await record_evidence(settings, [*others.grants, *others.mix])
    console.print(f"  evidence recorded for {recorded} grants of the grant and mixed phases")

    results.single_rate, cpu = await baseline_single(settings, workloads["a"])
    results.notes.append(cpu)
    results.set_rate, cpu = await baseline_set(settings, workloads["b"])
    results.notes.append(cpu)
    results.worker_code_rate, cpu = await worker_code(settings, workloads["c"])
    results.notes.append(cpu)
    results.bare_rate, cpu = await baseline_bare(settings, bare, now)
    results.notes.append(cpu)

    invariant_loads = (workloads["x"], workloads["y"])
    await end_to_end(run, results, workloads["w"], workloads["e"], invariant_loads, paced_cap, others)

    console.print("[bold]reconcile[/bold]: every account, every transaction, every outbox row")
    results.rejected = await count_rejected(settings)
    engine = make_engine(settings, pool_size=1)
    try:
        found = await reconcile(engine, require_events_sent=True)
    finally:
        await engine.dispose()
    results.discrepancies = [str(d) for d in found]
    return results
