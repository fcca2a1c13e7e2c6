"""The lookups the ledger worker makes for every command are served by an index.

A lookup without one reads a whole table inside the worker's transaction, for every
command of its kind: harmless on a test database, hours on a year of ledger. The
benchmark's mixed phase found two (a capture's hold by reference, and the
hold-settlement invariant's sum over a hold's transactions). Each query here runs
with sequential scans disabled: the plan must name the index that serves it, so
dropping or not matching an index fails here instead of in production.
"""

import json
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger.hold_store import BOOKING_HOLD_BY_REFERENCE

# (what, SQL as the worker or the database runs it, its parameters, the index it needs)
LOOKUPS = [
    (
        "a capture or release names its hold by reference",
        str(BOOKING_HOLD_BY_REFERENCE),
        {"user_id": "someone", "reference": "booking-1"},
        "holds_user_reference",
    ),
    (
        "hold_not_oversettled sums the transactions of the settled hold",
        "SELECT coalesce(sum(credits), 0) FROM ledger_transactions "
        "WHERE hold_id = :hold AND type <> 'CREDIT_HOLD'",
        {"hold": uuid.uuid4()},
        "ledger_tx_hold",
    ),
    (
        "refund_within_charge sums the refunds of the charge",
        "SELECT coalesce(sum(credits), 0) FROM ledger_transactions "
        "WHERE related_transaction_id = :tx AND type = 'CREDIT_REFUND'",
        {"tx": uuid.uuid4()},
        "ledger_tx_related",
    ),
]


def index_names(plan: object) -> set[str]:
    """Every index a JSON plan uses."""
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Index Name" in plan:
            found.add(plan["Index Name"])
        for value in plan.values():
            found |= index_names(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= index_names(value)
    return found


@pytest.mark.parametrize(("what", "sql", "params", "index"), LOOKUPS, ids=[x[3] for x in LOOKUPS])
async def test_per_command_lookup_uses_its_index(
    engine: AsyncEngine, what: str, sql: str, params: dict[str, object], index: str
) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = await conn.scalar(text(f"EXPLAIN (FORMAT JSON) {sql}"), params)
        await conn.rollback()
    used = index_names(json.loads(plan) if isinstance(plan, str) else plan)
    assert index in used, f"{what}: the plan uses {sorted(used) or 'no index'}, not {index}"
