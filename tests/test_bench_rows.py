"""The bench writes the ledger's own rows: funding and the baselines run the ledger
stores' statements and the handlers' results and events, so what they leave reconciles
and looks exactly like what the worker's code (diagnostic c) writes."""

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from devtools.bench.baselines import baseline_set, baseline_single
from devtools.bench.funding import fund
from devtools.bench.sandbox import bench_settings, drop_database
from devtools.bench.worker_code import worker_code
from devtools.bench.workload import credits_needed, funding_rounds, plan_charges
from ops.migrate import migrate
from services.db import make_engine
from services.ledger.invariant_queries import reconcile
from services.settings import Settings

PHASES = {"a": (12, 4), "b": (30, 6), "c": (12, 4)}  # phase: (charges, users)
SHAPES = text(
    """
    SELECT split_part(p.user_id, '-', 2) AS phase, p.type, p.result, p.fingerprint,
           o.event_type, o.payload
      FROM processed_commands p JOIN outbox o ON o.command_id = p.command_id
     WHERE p.user_id LIKE 'bench-%'
    """
)


def shape(value: Any) -> Any:
    """Keys all the way down, values left out (ids, times and balances differ)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    return type(value).__name__


async def run_phases(settings: Settings) -> list[Any]:
    now = datetime.now(UTC)
    workloads = {phase: plan_charges(phase, n, users) for phase, (n, users) in PHASES.items()}
    await fund(settings, {
        phase: funding_rounds(phase, credits_needed(n, users), now)
        for phase, (n, users) in PHASES.items()
    })
    await baseline_single(settings, workloads["a"])
    await baseline_set(settings, workloads["b"])
    await worker_code(settings, workloads["c"])
    engine = make_engine(settings, pool_size=1)
    try:
        found = await reconcile(engine)
        async with engine.connect() as conn:
            rows = (await conn.execute(SHAPES)).mappings().all()
    finally:
        await engine.dispose()
    return [found, rows]


def test_funding_and_baselines_write_the_rows_and_events_the_worker_writes(settings):
    own = bench_settings(settings, f"rows{uuid.uuid4().hex[:8]}", settings.kafka_bootstrap_servers)
    migrate(own)
    try:
        found, rows = asyncio.run(run_phases(own))
    finally:
        asyncio.run(drop_database(own.plain_database_url))
    assert found == []
    shapes: dict[tuple[str, str, str], set[str]] = {}
    for row in rows:
        payload = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
        key = (row["phase"], row["type"], row["event_type"])
        result = json.loads(row["result"]) if isinstance(row["result"], str) else row["result"]
        shapes.setdefault(key, set()).add(json.dumps([shape(result), shape(payload)]))
    kinds = {(t, e) for _, t, e in shapes}
    assert kinds == {
        ("credits.grant", "credits.granted"), ("credits.grant", "balance.changed"),
        ("credits.charge", "credits.charged"), ("credits.charge", "balance.changed"),
    }
    for kind in kinds:
        seen = {phase: shapes.get((phase, *kind)) for phase in PHASES}
        assert all(seen.values()), (kind, seen)
        assert seen["a"] == seen["b"] == seen["c"], (kind, seen)
    fingerprints = {(row["phase"], row["type"]): row["fingerprint"] is not None for row in rows}
    # Baseline (a)'s statements are fixed on purpose (no fingerprint); (b) claims as the worker.
    assert fingerprints[("b", "credits.charge")] and fingerprints[("c", "credits.charge")]
    assert fingerprints[("a", "credits.grant")]
