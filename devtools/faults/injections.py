"""The faults themselves; each runs while the load does and describes what it did in `result`."""

import asyncio
import time
from collections.abc import Awaitable, Callable

from devtools.faults.child import Child
from devtools.faults.context import Context
from devtools.faults.polling import wait_for
from devtools.faults.progress import say
from devtools.faults.report import Result

FaultFn = Callable[[Context, Result], Awaitable[None]]


async def kill_workers(ctx: Context, result: Result) -> None:
    """SIGKILL a random worker once it is applying batches, restart it at once."""
    count, waited_in_vain = ctx.plan.worker_kills, 0
    await asyncio.sleep(ctx.rng.uniform(0.5, 1.5))
    for n in range(1, count + 1):
        victim = ctx.rng.choice(ctx.fleet.workers)
        batches_before = victim.last.get("payment_batch_size_count", 0.0)

        async def working(victim: Child = victim, before: float = batches_before) -> bool:
            await victim.scrape()
            return victim.last.get("payment_batch_size_count", 0.0) > before

        if not await wait_for(working, 15):
            waited_in_vain += 1  # it got no partitions yet: kill it anyway
        await asyncio.sleep(ctx.rng.uniform(0.0, 1.2))
        pid, _ = await victim.kill_and_restart()
        say(f"  [{result.key}] SIGKILL {n}/{count}: {victim.name} (pid {pid}); restarted as "
            f"pid {victim.pid}")
    result.faults = f"{count} worker SIGKILLs (random worker of 2, restarted at once)"
    if waited_in_vain:
        result.notes.append(f"{waited_in_vain} kill(s) hit a worker that had not resumed work yet")


async def restart_postgres(ctx: Context, result: Result) -> None:
    """Fast-restart the Postgres server mid-load; always leave it running."""
    assert ctx.cluster is not None
    downtimes: list[float] = []
    try:
        for n in range(1, ctx.plan.pg_restarts + 1):
            await asyncio.sleep(ctx.rng.uniform(1.0, 3.0))
            say(f"  [{result.key}] restarting Postgres {ctx.cluster.version}/{ctx.cluster.name} "
                f"({n}/{ctx.plan.pg_restarts})")
            downtimes.append(await ctx.cluster.restart())
            say(f"  [{result.key}] Postgres accepts logins again after {downtimes[-1]:.1f}s")
    finally:
        ctx.cluster.ensure_running()
    result.faults = f"{len(downtimes)} Postgres restart(s), " + ", ".join(
        f"{d:.1f}s" for d in downtimes)


async def kill_relays(ctx: Context, result: Result) -> None:
    """SIGKILL whichever relay holds the advisory lock; the standby must take over."""
    takeovers: list[float] = []
    kills = 0
    while kills < ctx.plan.relay_kills:
        if not await wait_for(ctx.fleet.has_active_relay, 15):
            result.discrepancies.append("relay: no replica became active within 15 s")
            break
        await asyncio.sleep(ctx.rng.uniform(0.3, 2.0))
        victim = ctx.fleet.active_relay()
        if victim is None:  # it changed hands meanwhile: pick again
            continue
        kills += 1
        pid, killed_at = await victim.kill_and_restart()
        if not await wait_for(ctx.fleet.has_active_relay, 15):
            result.discrepancies.append(f"relay: no replica took over within 15 s of kill {kills}")
            continue
        takeovers.append(time.monotonic() - killed_at)
        heir = ctx.fleet.active_relay()
        say(f"  [{result.key}] SIGKILL {kills}/{ctx.plan.relay_kills}: active {victim.name} "
            f"(pid {pid}); {heir.name if heir else '?'} took over in {takeovers[-1]:.1f}s")
    result.faults = f"{kills} SIGKILLs of the active relay (2 relays)"
    if takeovers:
        result.notes.append(f"relay takeover after a kill: {min(takeovers):.1f}-{max(takeovers):.1f}s")


async def no_fault(ctx: Context, result: Result) -> None:
    """Scenario (d) breaks nothing: its fault is in the load, which sends every command twice."""
    result.faults = "every command published twice"
