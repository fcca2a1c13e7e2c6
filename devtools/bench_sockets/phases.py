"""One run: fund, start the services, find the worker's peak, open the sockets, measure.

The worker's peak comes from a short full-load burst on users without sockets (or from
--peak); the measured phase then publishes charges for the socket users at half of it,
paced, as `make bench`'s half-load phase does.
"""

import asyncio
import gc
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psutil
from aiokafka import AIOKafkaProducer

from devtools import processes
from devtools.bench.children import Child, spawn, wait_started
from devtools.bench.console import console
from devtools.bench.end_to_end import Phase, run_e2e_phase
from devtools.bench.event_watch import EventWatch
from devtools.bench.funding import fund
from devtools.bench.machine import CpuMeter, background_load, postgres_pids
from devtools.bench.phases import mark_backlog_sent
from devtools.bench.sandbox import Run
from devtools.bench.workload import Charge, credits_needed, funding_rounds, plan_charges, user_name
from devtools.bench_sockets.fleet import Fleet
from devtools.bench_sockets.ingress_child import spawn_ingress, wait_ready
from services.kafka_security import kafka_client_options

WARM_UP_CHARGES = 1000  # group join, caches, JIT-less Python's first calls
WARM_UP_USERS = 200
SETTLE_SECONDS = 5.0  # after the last event reached Kafka, how long sockets may still trail
OPEN_CONCURRENCY = 50  # socket handshakes in flight while opening the fleet
MAX_PACED_RATE = 20_000  # charges/s the socket users are funded for when the peak is measured


@dataclass
class Options:
    sockets: int
    users: int
    seconds: float
    burst: int
    peak: float | None
    compression: str | None


@dataclass
class Measured:
    """What the analysis needs: the phase, its charges, the sockets and the CPU used."""

    options: Options
    peak: float = 0.0
    peak_measured: bool = False
    connect_seconds: float = 0.0
    phase: Phase | None = None
    charges: list[Charge] = field(default_factory=list)
    kafka_arrival: dict[str, float] = field(default_factory=dict)  # event id -> perf_counter
    relayed: dict[str, float] = field(default_factory=dict)  # event id -> Unix time the relay sent it
    event_user: dict[str, str] = field(default_factory=dict)  # event id -> user
    frames: list[tuple[float, int, str]] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    closed: dict[int, str] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    rss: dict[str, int] = field(default_factory=dict)  # moment -> ingress RSS bytes
    notes: list[str] = field(default_factory=list)


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def owners(options: Options) -> list[str]:
    """Socket i belongs to user i mod users: a user's sockets are spread over the opening."""
    return [user_name("s", i % options.users) for i in range(options.sockets)]


async def _start_children(run: Run) -> tuple[Child, str]:
    for name in ("worker", "relay"):
        run.children.append(spawn(name, run.settings, run.tag))
    ingress, url = spawn_ingress(run.settings, run.tag)
    run.children.append(ingress)
    for child in run.children[:-1]:
        await wait_started(child)
    await wait_ready(ingress, url)
    return ingress, url


async def _settle(fleet: Fleet, start: int, expected: int) -> None:
    """Until the sockets received `expected` frames since index `start`, or SETTLE_SECONDS."""
    for _ in range(int(SETTLE_SECONDS / 0.05)):  # polled: the receive loops stay bare
        if len(fleet.frames) - start >= expected:
            return
        await asyncio.sleep(0.05)


async def measure(run: Run, options: Options) -> Measured:
    """Every step of the run on its database and broker; the caller cleans up."""
    settings = run.settings
    measured = Measured(options, owners=owners(options))
    busy = await background_load()
    measured.notes.append(f"background load before the start: {busy:.2f} cores busy")
    if busy > 0.25:
        console.print(f"[yellow]warning: {busy:.2f} cores already busy; figures will be low[/yellow]")
    rate_cap = options.peak / 2 if options.peak else MAX_PACED_RATE
    paced_cap = max(1, int(rate_cap * options.seconds))
    workloads = {"w": plan_charges("w", WARM_UP_CHARGES, WARM_UP_USERS)}
    if options.peak is None:
        workloads["k"] = plan_charges("k", options.burst, min(options.burst, options.users))
    now = datetime.now(UTC)
    funding = {p: funding_rounds(p, credits_needed(len(c), len({x.user_id for x in c})), now)
               for p, c in workloads.items()}
    funding["s"] = funding_rounds("s", credits_needed(paced_cap, options.users), now)
    console.print(f"[bold]funding[/bold]: {options.users} socket users for up to {paced_cap} charges, "
                  "warm-up and burst users; 3 batches each")
    await fund(settings, funding)
    await mark_backlog_sent(settings)

    watch = EventWatch(settings)
    await watch.start()
    producer = AIOKafkaProducer(**kafka_client_options(settings), linger_ms=5,
                                max_batch_size=512 * 1024, acks="all")
    await producer.start()
    fleet: Fleet | None = None
    try:
        console.print("[bold]services[/bold]: worker, relay, ingress")
        ingress, url = await _start_children(run)
        await run_e2e_phase("warm-up (group join, caches)", producer, watch, settings,
                            workloads["w"], None, 60)
        if options.peak is None:
            burst = await run_e2e_phase("the worker's peak: full-load burst", producer, watch,
                                        settings, workloads["k"], None, max(60.0, options.burst / 100))
            measured.peak, measured.peak_measured = burst.rate, True
        else:
            measured.peak = options.peak
        measured.rss["before the sockets"] = rss(ingress.process.pid)

        fleet = Fleet(url.replace("http://", "ws://") + "/payment/ws", settings, measured.owners,
                      options.compression)
        console.print(f"[bold]sockets[/bold]: opening {options.sockets} for {options.users} users")
        meter = CpuMeter({"ingress": [ingress.process.pid], "bench": [os.getpid()]})
        meter.begin()
        started = time.perf_counter()
        await fleet.open_all(OPEN_CONCURRENCY)
        measured.connect_seconds = time.perf_counter() - started
        measured.notes.append("opening the sockets: " + meter.report())
        measured.rss["sockets open"] = rss(ingress.process.pid)
        console.print(f"  {len(fleet.sockets)} open in {measured.connect_seconds:.1f}s, "
                      f"{len(fleet.failed)} failed")

        rate = measured.peak / 2
        count = max(1, min(paced_cap, int(rate * options.seconds)))
        measured.charges = plan_charges("s", count, options.users)
        pids = {"ingress": [ingress.process.pid], "bench": [os.getpid()],
                **{c.name: [c.process.pid] for c in run.children if c is not ingress},
                "tansu": [p.pid for p in run.stack.children], "postgres": await postgres_pids(settings)}
        meter = CpuMeter(pids)
        start = len(fleet.frames)
        gc.collect()
        gc.disable()  # the bench's own pauses would stamp frames late: it collects afterwards
        meter.begin()
        began = time.perf_counter()
        try:
            measured.phase = await run_e2e_phase("sockets at half the peak", producer, watch, settings,
                                                 measured.charges, rate, options.seconds * 3 + 60)
            per_user = Counter(measured.owners)
            await _settle(fleet, start, sum(per_user[c.user_id] for c in measured.charges))
        finally:
            gc.enable()
        measured.wall = time.perf_counter() - began
        measured.cpu = meter.used()
        measured.notes.append("measured phase: " + meter.report())
        measured.rss["after the phase"] = rss(ingress.process.pid)
        measured.frames = fleet.frames[start:]
        measured.failed, measured.closed = dict(fleet.failed), dict(fleet.closed)
        for charge in measured.charges:
            command_id = str(charge.id)
            event_id = watch.event_ids[command_id]
            measured.event_user[event_id] = charge.user_id
            measured.kafka_arrival[event_id] = watch.arrived[command_id]
            measured.relayed[event_id] = watch.relayed[command_id]
    finally:
        if fleet is not None:
            await fleet.close_all()
        await producer.stop()
        await watch.stop()
        for child in run.children:
            await asyncio.to_thread(processes.stop, child.process, 15)
    return measured
