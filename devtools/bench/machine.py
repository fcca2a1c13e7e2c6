"""Where the CPU went: per process group during a phase, and how busy the machine was before.

On a small machine the bench, Postgres, the broker, the worker and the relay share a
few cores, so a rate means little without the CPU split the notes print beside it.
"""

import asyncio
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.bench.sql import connect
from services.settings import Settings

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process from /proc (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def machine_busy_seconds() -> float:
    """Busy CPU seconds of all cores since boot (/proc/stat; NaN where there is none)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return math.nan
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICK


async def background_load(seconds: float = 1.0) -> float:
    """Cores kept busy by other work before the bench starts: figures need a quiet machine."""
    before = machine_busy_seconds()
    await asyncio.sleep(seconds)
    return (machine_busy_seconds() - before) / seconds


@dataclass
class CpuMeter:
    """CPU used per process group during a phase, and by everything else on the machine.

    A process that exits during the phase (a pooled backend) counts for nothing.
    """

    pids: dict[str, list[int]]
    at: float = 0.0
    machine: float = 0.0
    start: dict[int, float | None] = field(default_factory=dict)

    def begin(self) -> None:
        self.at, self.machine = time.perf_counter(), machine_busy_seconds()
        self.start = {p: cpu_seconds(p) for ps in self.pids.values() for p in ps}

    def _used(self, pid: int) -> float:
        before, after = self.start.get(pid), cpu_seconds(pid)
        return after - before if before is not None and after is not None else 0.0

    def used(self) -> dict[str, float]:
        """CPU seconds of each process group since `begin`."""
        return {n: sum(self._used(p) for p in ps) for n, ps in self.pids.items()}

    def report(self) -> str:
        wall = time.perf_counter() - self.at
        used = self.used()
        other = machine_busy_seconds() - self.machine - sum(used.values())
        parts = [f"{n} {v / wall:.0%}" for n, v in used.items()] + [f"other {other / wall:.0%}"]
        return f"CPU over {wall:.1f}s (100% = one core of {os.cpu_count()}): " + ", ".join(parts)


async def postgres_pids(settings: Settings) -> list[int]:
    """Backends of the bench database plus the server's WAL writer and checkpointer."""
    async with connect(settings) as conn:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE (datname = current_database() "
            "AND pid <> pg_backend_pid()) OR backend_type IN ('walwriter', 'checkpointer', "
            "'background writer')"
        )
        return [r["pid"] for r in rows]
