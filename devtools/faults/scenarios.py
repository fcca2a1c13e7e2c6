"""The four scenarios, and how one runs: load, fault, quiescence, checks."""

import asyncio
import contextlib
import time
from dataclasses import dataclass

from devtools.faults.baseline import Baseline
from devtools.faults.checks import check_commands
from devtools.faults.context import Context
from devtools.faults.injections import FaultFn, kill_relays, kill_workers, no_fault, restart_postgres
from devtools.faults.load import Load
from devtools.faults.progress import say
from devtools.faults.quiescence import wait_for_quiescence
from devtools.faults.report import Result


@dataclass(frozen=True)
class Scenario:
    key: str
    name: str
    fault: FaultFn
    twice: bool = False  # publish every command twice


SCENARIOS = (
    Scenario("a", "a: worker SIGKILL", kill_workers),
    Scenario("b", "b: Postgres restart", restart_postgres),
    Scenario("c", "c: relay SIGKILL", kill_relays),
    Scenario("d", "d: every command twice", no_fault, twice=True),
)


async def run_scenario(ctx: Context, scenario: Scenario) -> Result:
    """Fresh users under load while the fault strikes; then quiescence and every check."""
    result = Result(scenario.key, scenario.name)
    if scenario.key == "b" and ctx.cluster is None:
        result.skipped = f"skipped: {ctx.cluster_note}"
        result.faults = result.skipped
        say(f"[yellow]{scenario.name} {result.skipped}[/yellow]")
        return result
    say(f"[bold]{scenario.name}[/bold]: load {ctx.plan.rate} cmds/s over {ctx.plan.users} users")
    started = time.monotonic()
    baseline = await Baseline.take(ctx)

    load = Load(ctx, scenario.key, twice=scenario.twice)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(load.run(stop)), asyncio.create_task(load.poll_usage(stop)),
             asyncio.create_task(_report_progress(ctx, load, result, stop))]
    try:
        await scenario.fault(ctx, result)
        remaining = ctx.plan.min_load - (time.monotonic() - started)
        await asyncio.sleep(max(remaining, 1.0))  # and some load after the last fault
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (error := task.exception()):
            raise error
    result.sent, result.messages = len(load.sent), load.messages
    say(f"  [{scenario.key}] load stopped: {result.sent} commands in {result.messages} messages "
        f"over {time.monotonic() - started:.1f}s; waiting for quiescence")
    if load.copies:
        result.notes.append("second copies: " + ", ".join(f"{n} {k}" for k, n in load.copies.items()))
    await wait_for_quiescence(ctx, load, result)
    await check_commands(ctx, load, result)
    await baseline.check_since(ctx, result, twice=scenario.twice)
    result.seconds = time.monotonic() - started
    say(f"  [{scenario.key}] {result.verdict(f'{len(result.discrepancies)} discrepancies')} "
        f"({result.seconds:.1f}s)")
    return result


async def _report_progress(ctx: Context, load: Load, result: Result, stop: asyncio.Event) -> None:
    """A line every few seconds; also notices a child that died by itself (and restarts it)."""
    started = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 3.0)
        await ctx.fleet.scrape()
        for what in ctx.fleet.check_exits():
            result.discrepancies.append(what)
            say(f"  [red]{what}; restarted[/red]")
        handled = ctx.fleet.worker_counter("payment_commands_total") - load.handled_before
        say(f"  [{result.key}] {time.monotonic() - started:5.1f}s: sent {len(load.sent)} commands "
            f"({load.messages} messages); the workers applied or rejected {int(handled)}")
