"""`pika-payment prune`: delete what the service no longer needs, in bounded batches.

Sent outbox rows after OUTBOX_RETENTION_DAYS, rejected command ids after
COMMAND_ID_RETENTION_DAYS (which the settings refuse to set shorter than Kafka can
redeliver a command: services/retention/windows.py), Stripe webhook inbox rows after
STRIPE_EVENT_RETENTION_DAYS, settled email claims after NOTIFICATION_RETENTION_DAYS
(refused shorter than Kafka can redeliver an event, likewise), and expiry reminders of
batches expired more than EXPIRY_REMINDER_RETENTION_DAYS ago. What is kept and why:
services/retention/store.py.

Each batch is its own transaction of at most PRUNE_BATCH_SIZE rows, so the job never
holds locks or a snapshot for long next to the worker and relay, and a run cut short
(a deadline, a restart) keeps what it did; the next run carries on. Running it twice,
or in two pods at once, deletes nothing twice: a row is gone or it is not.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from services.retention.store import (
    EXPIRY_REMINDERS,
    OUTBOX,
    PROCESSED_COMMANDS,
    SENT_NOTIFICATIONS,
    STRIPE_EVENTS,
    PruneRule,
    count_prunable,
    database_now,
    delete_batch,
)
from services.settings import Settings


@dataclass(frozen=True)
class Pruned:
    """Rows of one table deleted (or, in a dry run, that would be) before `cutoff`;
    `cutoff_of` says what the cutoff was compared with ("older than", ...)."""

    table: str
    rows: int
    cutoff: datetime
    cutoff_of: str


def windows(settings: Settings) -> list[tuple[PruneRule, int]]:
    return [
        (OUTBOX, settings.outbox_retention_days),
        (PROCESSED_COMMANDS, settings.command_id_retention_days),
        (STRIPE_EVENTS, settings.stripe_event_retention_days),
        (SENT_NOTIFICATIONS, settings.notification_retention_days),
        (EXPIRY_REMINDERS, settings.expiry_reminder_retention_days),
    ]


async def prune(
    engine: AsyncEngine,
    settings: Settings,
    *,
    dry_run: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> list[Pruned]:
    """Prune every table; `progress(table, rows so far)` after each batch."""
    async with engine.connect() as conn:
        now = await database_now(conn)
    done: list[Pruned] = []
    for rule, days in windows(settings):
        cutoff = now - timedelta(days=days)
        if dry_run:
            async with engine.connect() as conn:
                rows = await count_prunable(conn, rule, cutoff)
            done.append(Pruned(rule.table, rows, cutoff, rule.cutoff_of))
            continue
        total = await _prune_table(engine, rule, cutoff, settings.prune_batch_size, progress)
        done.append(Pruned(rule.table, total, cutoff, rule.cutoff_of))
    return done


async def _prune_table(
    engine: AsyncEngine,
    rule: PruneRule,
    cutoff: datetime,
    batch_size: int,
    progress: Callable[[str, int], None] | None,
) -> int:
    total, after = 0, rule.first_key
    while True:
        async with engine.begin() as conn:
            keys = await delete_batch(conn, rule, cutoff, after, batch_size)
        if not keys:
            return total
        total += len(keys)
        after = keys[-1]
        if progress:
            progress(rule.table, total)
