"""The database invariants of migration 0011, switched off for one end-to-end phase.

What the triggers cost is measured in the same run: the full-load phase (triggers on),
the same load on fresh users with the triggers disabled, then again with them on; the
"on" figure is the mean of the two phases either side of the "off" one, so neither
warm-up nor the ledger growing during the run favours one side.

Only the bench's private database is altered, and the triggers are enabled again
whatever happens (`triggers_disabled`), before the reconcile, which checks the same
rules (a balance equals its open batches; nothing over-settled or over-refunded) after
the fact, so the rows written without the triggers are still proved right.
"""

import contextlib
import math
import statistics
from collections.abc import AsyncIterator, Sequence

import asyncpg

from devtools.bench.end_to_end import Phase
from devtools.bench.sql import connect
from services.settings import Settings

# Table -> its invariant triggers (migrations/versions/0011_money_safety.py). A booking
# charge fires only `available_is_open_batches` (deferred, once per account and
# transaction at commit); the WHEN clauses of the other two skip charges.
INVARIANT_TRIGGERS = {
    "accounts": ("available_is_open_batches",),
    "ledger_transactions": ("hold_not_oversettled", "refund_within_charge"),
}
LOCK_TIMEOUT = "10s"  # the worker is idle between phases; a longer wait is a bug, not a queue

TRIGGER_STATES = """
    SELECT c.relname || '.' || t.tgname AS name, t.tgenabled::text AS state
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE NOT t.tgisinternal AND (c.relname, t.tgname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""


def invariant_names() -> str:
    return ", ".join(t for triggers in INVARIANT_TRIGGERS.values() for t in triggers)


async def switch_invariant_triggers(conn: asyncpg.Connection, enabled: bool) -> None:
    """ENABLE or DISABLE every invariant trigger in one transaction, then check pg_trigger says so.

    A trigger missing (renamed by a later migration) fails the ALTER, and so the run.
    """
    verb = "ENABLE" if enabled else "DISABLE"
    pairs = [(table, trigger) for table, triggers in INVARIANT_TRIGGERS.items() for trigger in triggers]
    async with conn.transaction():
        for table, triggers in INVARIANT_TRIGGERS.items():
            actions = ", ".join(f"{verb} TRIGGER {trigger}" for trigger in triggers)
            await conn.execute(f"ALTER TABLE {table} {actions}")
    rows = await conn.fetch(TRIGGER_STATES, [p[0] for p in pairs], [p[1] for p in pairs])
    wanted = "O" if enabled else "D"  # pg_trigger.tgenabled: O = fires (origin), D = disabled
    states = {r["name"]: r["state"] for r in rows}
    names = [f"{table}.{trigger}" for table, trigger in pairs]
    wrong = [f"{n}={states.get(n, 'missing')}" for n in names if states.get(n) != wanted]
    if wrong:
        raise RuntimeError(f"invariant triggers not {verb.lower()}d: {', '.join(wrong)}")


async def set_invariant_triggers(settings: Settings, enabled: bool) -> None:
    """`switch_invariant_triggers` on a connection of its own, waiting at most LOCK_TIMEOUT."""
    async with connect(settings) as conn:
        await conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
        await switch_invariant_triggers(conn, enabled)


@contextlib.asynccontextmanager
async def triggers_disabled(settings: Settings) -> AsyncIterator[None]:
    """The invariant triggers off inside the block, on again on the way out, error or not."""
    await set_invariant_triggers(settings, enabled=False)
    try:
        yield
    finally:
        await set_invariant_triggers(settings, enabled=True)


def mean_rate(phases: Sequence[Phase | None]) -> float:
    """The mean charges/s of the phases that ran (NaN when none did)."""
    rates = [p.rate for p in phases if p is not None and not math.isnan(p.rate)]
    return statistics.fmean(rates) if rates else math.nan


def cost_note(on: Sequence[Phase], off: Phase) -> str:
    """The triggers' cost per charge in CPU, less noisy than a rate on a shared machine.

    Postgres CPU is where the triggers run; the worker's is there to show that it did
    not move (the worker waits for the commit, it does not check anything itself).
    """

    def per_charge(phase: Phase, group: str) -> float:
        return phase.cpu.get(group, math.nan) / len(phase.ids) * 1e6 if phase.ids else math.nan

    parts = []
    for group in ("postgres", "worker"):
        with_ = statistics.fmean(per_charge(p, group) for p in on)
        without = per_charge(off, group)
        parts.append(f"{group} {with_:.0f} us on / {without:.0f} us off ({with_ - without:+.0f} us)")
    rates = ", ".join(f"{p.rate:,.0f}/s" for p in on)
    return (
        f"invariant triggers ({invariant_names()}): CPU per charge "
        + "; ".join(parts)
        + f"; 'on' is the mean of {len(on)} phases ({rates}) framing the 'off' one ({off.rate:,.0f}/s)"
    )
