"""One end-to-end phase: publish commands to Kafka, wait for each `balance.changed`, measure.

The rate is N / (last `balance.changed` - first publish); a command's latency runs
from its publish to its `balance.changed` arriving here, queueing included. Every
command the phases publish (charges, grants, holds, captures, releases) changes a
balance, so one event per command id says it was applied and relayed.
"""

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer

from devtools.bench.console import console
from devtools.bench.event_watch import EventWatch
from devtools.bench.sql import connect
from devtools.bench.timing import cancel_unless_done
from devtools.bench.workload import Charge
from schemas.commands import CommandEnvelope
from services.settings import Settings

# perf_counter() -> Unix time, to compare with Kafka record timestamps and Postgres now().
EPOCH_OFFSET = time.time() - time.perf_counter()


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a p99 is a latency someone saw)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Phase:
    """One end-to-end phase: when each charge was published and its event arrived."""

    label: str
    ids: list[str]
    first: float = 0.0
    last_published: float = 0.0
    sent_at: dict[str, float] = field(default_factory=dict)
    rate: float = math.nan
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process group, if metered

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)


async def publish(
    producer: AIOKafkaProducer,
    topic: str,
    phase: Phase,
    commands: Sequence[tuple[str, bytes, bytes]],
    rate: float | None,
) -> None:
    """Pipelined sends of (id, key, value); `rate` paces them, None = as fast as possible."""
    futures: list[asyncio.Future[Any]] = []
    phase.first = time.perf_counter()
    sent = 0
    while sent < len(commands):
        due = len(commands) if rate is None else min(
            len(commands), int((time.perf_counter() - phase.first) * rate) + 1
        )
        while sent < due:
            command_id, key, value = commands[sent]
            phase.sent_at[command_id] = time.perf_counter()
            futures.append(await producer.send(topic, value=value, key=key))
            sent += 1
        if sent < len(commands):
            await asyncio.sleep(0.002)
    phase.last_published = time.perf_counter()
    await asyncio.gather(*futures)


async def run_e2e_phase(
    label: str,
    producer: AIOKafkaProducer,
    watch: EventWatch,
    settings: Settings,
    commands: Sequence[Charge | CommandEnvelope],
    rate: float | None,
    timeout: float,
    topic: str | None = None,
) -> Phase:
    """Publish the commands (to `topic`, by default the public command topic), wait for
    every `balance.changed`, measure."""
    envelopes = [c.command() if isinstance(c, Charge) else c for c in commands]
    wire = [(str(c.id), c.user_id.encode(), c.model_dump_json().encode()) for c in envelopes]
    phase = Phase(label, [c for c, _, _ in wire])
    watch.expect(phase.ids)
    pace = f" paced at {rate:,.0f}/s" if rate else " as fast as possible"
    console.print(f"[bold]{label}[/bold]: {len(wire)} commands{pace}")
    publishing = asyncio.create_task(
        publish(producer, topic or settings.commands_topic, phase, wire, rate)
    )
    deadline = time.perf_counter() + timeout
    try:
        while not watch.complete.is_set():
            if publishing.done() and publishing.exception():
                await publishing
            if watch.rejected:
                reason = next(iter(watch.rejected.values()))
                raise RuntimeError(f"{label}: {len(watch.rejected)} commands rejected (e.g. {reason})")
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"{label}: {len(watch.waiting)} of {len(wire)} balance.changed events "
                    f"missing after {timeout:.0f}s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.complete.wait(), 1.0)
            console.print(f"  events {len(wire) - len(watch.waiting)}/{len(wire)}")
        await publishing
    finally:
        await cancel_unless_done(publishing)
    last = max(watch.arrived[c] for c in phase.ids)
    phase.rate = len(wire) / (last - phase.first)
    phase.latencies = [(watch.arrived[c] - phase.sent_at[c]) * 1000 for c in phase.ids]
    console.print(
        f"  {len(wire)} commands in {last - phase.first:.2f}s: [bold]{phase.rate:,.0f}/s[/bold], "
        f"p50 {phase.p(0.5):.0f} ms, p99 {phase.p(0.99):.0f} ms "
        f"(publishing took {phase.last_published - phase.first:.2f}s)"
    )
    return phase


async def latency_stages(settings: Settings, phase: Phase, watch: EventWatch) -> str:
    """Where a charge's latency goes: p50/p99 of each stage, in ms.

    publish -> worker: until the worker's transaction began (processed_at is the
    transaction's now()): Kafka delivery, the worker's fetch, waiting for the batch
    before. worker -> relay: apply, commit, NOTIFY, the relay's fetch and send (the
    record timestamp). relay -> here: the relay's linger, the broker, our fetch.
    """
    async with connect(settings) as conn:
        rows = await conn.fetch(
            "SELECT command_id::text, extract(epoch FROM processed_at)::float8 AS at "
            "FROM processed_commands WHERE command_id = ANY($1::uuid[])",
            phase.ids,
        )
    began = {r["command_id"]: r["at"] for r in rows}
    stages: dict[str, list[float]] = {"publish->worker": [], "worker->relay": [], "relay->here": []}
    for command_id in phase.ids:
        sent = phase.sent_at[command_id] + EPOCH_OFFSET
        arrived = watch.arrived[command_id] + EPOCH_OFFSET
        worker, relayed = began[command_id], watch.relayed[command_id]
        stages["publish->worker"].append((worker - sent) * 1000)
        stages["worker->relay"].append((relayed - worker) * 1000)
        stages["relay->here"].append((arrived - relayed) * 1000)
    parts = [f"{n} {percentile(v, 0.5):.0f}/{percentile(v, 0.99):.0f}" for n, v in stages.items()]
    return f"{phase.label} latency stages p50/p99 ms: " + ", ".join(parts)
