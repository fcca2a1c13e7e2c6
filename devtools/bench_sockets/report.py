"""From what the sockets received to the figures: deliveries, latency, the ingress's cost.

Every `balance.changed` of the measured phase must reach every socket of its user
exactly once; a missing, repeated or misdirected delivery fails the run. Latency runs
from the event's arrival at the bench's own Kafka consumer to its arrival on the
socket, both stamped with this process's clock.
"""

import json
import math
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from devtools.bench.console import console
from devtools.bench.end_to_end import EPOCH_OFFSET, percentile
from devtools.bench_sockets.phases import Measured

LATENCY_GOAL_MS = 100.0


@dataclass
class Deliveries:
    expected: int = 0
    received: int = 0
    missing: int = 0
    repeated: int = 0
    misdirected: int = 0  # an event of another user, or of no event of the phase
    latencies: list[float] = field(default_factory=list)  # ms, Kafka -> socket
    from_relay: list[float] = field(default_factory=list)  # ms, the relay's send -> socket

    @property
    def failed(self) -> bool:
        return bool(self.missing or self.repeated or self.misdirected)


def deliveries(measured: Measured) -> Deliveries:
    sockets_of: dict[str, list[int]] = {}
    for index, user in enumerate(measured.owners):
        if index not in measured.failed:
            sockets_of.setdefault(user, []).append(index)
    result = Deliveries()
    seen: Counter[tuple[int, str]] = Counter()
    for arrived, index, frame in measured.frames:
        message = json.loads(frame)
        if message.get("type") != "balance.changed":
            continue
        event_id = message.get("eventId")
        result.received += 1
        if measured.event_user.get(event_id) != measured.owners[index]:
            result.misdirected += 1
            continue
        seen[index, event_id] += 1
        if seen[index, event_id] == 1:
            result.latencies.append((arrived - measured.kafka_arrival[event_id]) * 1000)
            result.from_relay.append((arrived + EPOCH_OFFSET - measured.relayed[event_id]) * 1000)
    for event_id, user in measured.event_user.items():
        for index in sockets_of.get(user, []):
            result.expected += 1
            count = seen[index, event_id]
            result.missing += count == 0
            result.repeated += max(0, count - 1)
    return result


def _ms(values: list[float], q: float) -> str:
    value = percentile(values, q)
    return "n/a" if math.isnan(value) else f"{value:,.1f} ms"


def print_report(measured: Measured, found: Deliveries) -> None:
    options, phase = measured.options, measured.phase
    events = len(measured.event_user)
    p99 = percentile(found.latencies, 0.99)
    yes, no = "[green]met[/green]", "[red]missed[/red]"
    ingress_cpu, bench_cpu = measured.cpu.get("ingress", math.nan), measured.cpu.get("bench", math.nan)
    wall = measured.wall or math.nan
    table = Table(title="pika-payment bench-sockets: balance.changed fan-out on one ingress")
    for column, justify in (("measure", "left"), ("value", "right"), ("note", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_row("sockets connected", f"{options.sockets - len(measured.failed):,} / {options.sockets:,}",
                  f"{options.users:,} users, opened in {measured.connect_seconds:.1f}s")
    source = "measured: full-load burst" if measured.peak_measured else "given: --peak"
    table.add_row("worker's peak", f"{measured.peak:,.0f}/s", source)
    table.add_row("events", f"{events:,}", f"balance.changed at {phase.rate if phase else math.nan:,.0f}/s, "
                  f"paced at {measured.peak / 2:,.0f}/s")
    table.add_row("deliveries expected", f"{found.expected:,}", "each event on each socket of its user")
    table.add_row("deliveries received", f"{found.received:,}",
                  f"missing {found.missing}, repeated {found.repeated}, misdirected {found.misdirected}")
    table.add_row("Kafka -> socket p50", _ms(found.latencies, 0.5), "bench's Kafka receive -> socket receive")
    table.add_row("Kafka -> socket p95", _ms(found.latencies, 0.95), "")
    table.add_row("Kafka -> socket p99", _ms(found.latencies, 0.99),
                  f"goal < {LATENCY_GOAL_MS:.0f} ms {yes if p99 < LATENCY_GOAL_MS else no}")
    table.add_row("relay -> socket p50/p99",
                  f"{_ms(found.from_relay, 0.5)} / {_ms(found.from_relay, 0.99)}",
                  "from the record's timestamp (the relay's send)")
    table.add_row("ingress CPU per event", f"{ingress_cpu / events * 1000:.2f} ms" if events else "n/a",
                  f"{ingress_cpu:.2f} CPU s over {wall:.1f}s ({ingress_cpu / wall:.0%} of a core); "
                  f"per delivery {ingress_cpu / max(1, found.received) * 1e6:.0f} µs")
    table.add_row("ingress RSS", f"{measured.rss.get('after the phase', 0) / 2**20:,.0f} MB",
                  ", ".join(f"{k} {v / 2**20:,.0f} MB" for k, v in measured.rss.items()))
    table.add_row("bench CPU", f"{bench_cpu / wall:.0%} of a core",
                  f"{bench_cpu:.2f} CPU s: 2 Kafka clients + {options.sockets:,} sockets, one loop")
    Console(highlight=False).print(table)
    for note in measured.notes:
        console.print(f"  {note}")
    if measured.failed:
        console.print(f"[red]{len(measured.failed)} sockets did not open[/red], e.g. "
                      f"{next(iter(measured.failed.values()))}")
    if measured.closed:
        console.print(f"[red]{len(measured.closed)} sockets were closed by the server[/red], e.g. "
                      f"{next(iter(measured.closed.values()))}")
