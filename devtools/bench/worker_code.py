"""Diagnostic (c): the worker's own code without Kafka.

`apply_commands` (SQLAlchemy + pydantic) in worker-sized batches on one connection
splits the end-to-end cost into "ledger code" and "Kafka + relay".
"""

from sqlalchemy import text

from devtools.bench.timing import timed
from devtools.bench.workload import Charge
from services.bootstrap import command_registry
from services.db import make_engine
from services.ledger.apply import apply_commands
from services.settings import Settings


async def worker_code(settings: Settings, charges: list[Charge]) -> tuple[float, str]:
    """(c): the worker's `apply_commands` in worker-sized batches, no Kafka, one connection."""
    commands = [c.command() for c in charges]
    size = settings.worker_batch_size
    registry = command_registry()
    engine = make_engine(settings, pool_size=1)
    done = 0

    async def drain() -> None:
        nonlocal done
        for start in range(0, len(commands), size):
            batch = commands[start : start + size]
            report = await apply_commands(engine, settings, batch, registry)
            if report.applied != len(batch):
                raise RuntimeError(f"diagnostic (c): {len(batch) - report.applied} charges not applied")
            done += len(batch)

    try:
        async with engine.connect() as conn:  # open the pooled connection before the clock starts
            await conn.execute(text("SELECT 1"))
        return await timed(
            f"diagnostic (c) apply_commands, {size}/tx, no Kafka", settings, len(commands), lambda: done,
            drain(),
        )
    finally:
        await engine.dispose()
