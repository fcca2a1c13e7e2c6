"""Timing a database-only phase: progress every second, charges per second, CPU split."""

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from devtools.bench.console import console
from devtools.bench.machine import CpuMeter, postgres_pids
from services.settings import Settings


async def cancel_unless_done(task: asyncio.Future[Any]) -> None:
    """Cancel a phase's task left running by an error or Ctrl-C, and wait until it has stopped."""
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def timed(
    label: str, settings: Settings, total: int, progress: Callable[[], int], work: Awaitable[Any]
) -> tuple[float, str]:
    """Run `work` with progress every second; (charges per second, where the CPU went)."""
    console.print(f"[bold]{label}[/bold]: {total} charges")
    meter = CpuMeter({"bench": [os.getpid()], "postgres": await postgres_pids(settings)})
    meter.begin()
    started = time.perf_counter()
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            if not task.done():
                console.print(f"  {progress()}/{total}")
        await task
    finally:
        await cancel_unless_done(task)
    elapsed = time.perf_counter() - started
    rate = total / elapsed
    cpu = meter.report()
    console.print(f"  done in {elapsed:.2f}s: [bold]{rate:,.0f} charges/s[/bold]; {cpu}")
    return rate, f"{label.split(' ', 2)[0]} {label.split(' ', 2)[1]} {cpu}"
