"""Waiting, after the load stops, until the system has nothing left to do."""

import asyncio
import time

from devtools.faults.context import Context
from devtools.faults.database import DB_ERRORS
from devtools.faults.load import Load
from devtools.faults.progress import say
from devtools.faults.report import Result


async def wait_for_quiescence(ctx: Context, load: Load, result: Result) -> None:
    """Wait until every command sent is processed and no outbox row is unsent.

    Only then do the checks mean something: an unapplied command or an unsent event
    would look like a lost one. Not getting there in time is itself a discrepancy.
    """
    ids = list(load.sent)
    deadline = time.monotonic() + ctx.plan.quiesce_timeout
    last_report, missing, unsent = 0.0, len(ids), -1
    while time.monotonic() < deadline:
        try:
            found = await ctx.db.fetch(
                "SELECT (SELECT count(*) FROM processed_commands WHERE command_id = ANY($1::uuid[]))"
                " AS done, (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS unsent",
                ids,
            )
            missing, unsent = len(ids) - int(found[0]["done"]), int(found[0]["unsent"])
        except DB_ERRORS:
            pass
        if missing == 0 and unsent == 0:
            return
        if time.monotonic() - last_report > 3:
            last_report = time.monotonic()
            say(f"  [{result.key}] waiting: {missing} commands unprocessed, {unsent} events unsent")
            for what in ctx.fleet.check_exits():
                result.discrepancies.append(what)
        await asyncio.sleep(0.2)
    result.discrepancies.append(
        f"no quiescence within {ctx.plan.quiesce_timeout:.0f}s: {missing} commands never "
        f"processed, {unsent} outbox rows unsent"
    )
