"""SQL of `pika-payment prune`: which rows may go, and deleting them in bounded batches.

What may go, and why nothing else:
- `outbox`: rows already sent (`sent_at` set) before the cutoff. The relay reads only
  unsent rows; nothing references an outbox row. Unsent rows are never deleted,
  however old: they are events still owed to `payment.events`.
- `processed_commands`: only `rejected` commands processed before the cutoff. A
  rejected command changed nothing (its savepoint rolled back) and no ledger
  transaction names it, so its id, once Kafka can no longer redeliver it
  (services/retention/windows.py), guards nothing. Applied commands are kept for
  good: every ledger transaction must belong to one (`reconcile`), and their rows are
  what stops a replayed command (an admin grant, say, whose evidence is still on
  record) from moving credits a second time.
- `stripe_events`: the webhook inbox, a record of deliveries that nothing reads back
  (the ledger dedupes a redelivered event by its command id, a UUIDv5 of the event id).
- `sent_notifications`: the notify worker's claim of an (event, template), once it is
  settled (`sent`, `skipped` or `failed`) and was claimed before the cutoff, which the
  settings keep past any redelivery of the event from `payment.events`
  (services/retention/windows.py). `pending` rows are never deleted: they are emails
  still owed, and they carry the event their retries render from.
- `expiry_reminders`: the record that a batch was reminded about, once the batch
  expired before the cutoff. `remind` looks only at batches not expired yet
  (services/notifications/store.py, EXPIRING), so the row of a batch long expired
  stops nothing; the row of a batch still to expire is what stops a second reminder,
  and is never deleted, however old the reminder.

`command_evidence` is append-only (a trigger refuses DELETE) and is never pruned.

Each table is walked by its primary key (keyset, a row comparison for a key of two
columns): a run reads every candidate once, whatever the table's size, and each DELETE
is its own short transaction.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class PruneRule:
    """One table's prunable rows: a count (dry run) and a batch delete from a key on.

    `cutoff_of` says what the cutoff is compared with, for the operator's report.
    """

    table: str
    count: TextClause
    delete_batch: TextClause
    first_key: tuple[Any, ...]
    cutoff_of: str = "older than"


def _rule(
    table: str, keys: tuple[str, ...], prunable: str, first_key: tuple[Any, ...],
    cutoff_of: str = "older than",
) -> PruneRule:
    """The two statements of one table; `prunable` is its WHERE condition (fixed text)."""
    columns = ", ".join(keys)
    after = ", ".join(f":after_{i}" for i in range(len(keys)))
    return PruneRule(
        table,
        text(f"SELECT count(*) FROM {table} WHERE {prunable}"),
        text(
            f"DELETE FROM {table} WHERE ({columns}) IN ("
            f" SELECT {columns} FROM {table} WHERE ({columns}) > ({after}) AND {prunable}"
            f" ORDER BY {columns} LIMIT :limit) RETURNING {columns}"
        ),
        first_key,
        cutoff_of,
    )


# `sent_at < cutoff` is false for unsent rows (NULL): they are never deleted.
OUTBOX = _rule("outbox", ("id",), "sent_at < :cutoff", (0,))
PROCESSED_COMMANDS = _rule(
    "processed_commands",
    ("command_id",),
    "status = 'rejected' AND processed_at < :cutoff",
    (uuid.UUID(int=0),),
)
STRIPE_EVENTS = _rule("stripe_events", ("event_id",), "received_at < :cutoff", ("",))
SENT_NOTIFICATIONS = _rule(
    "sent_notifications",
    ("event_id", "template"),
    "status <> 'pending' AND created_at < :cutoff",
    (uuid.UUID(int=0), ""),
    "claimed before",
)
# The batch's expiry, not the reminder's age: a reminder sent a year ahead of a
# membership batch's expiry must still stop a second one until that expiry.
EXPIRY_REMINDERS = _rule(
    "expiry_reminders",
    ("batch_id",),
    "EXISTS (SELECT 1 FROM credit_batches b"
    " WHERE b.id = expiry_reminders.batch_id AND b.expires_at < :cutoff)",
    (uuid.UUID(int=0),),
    "of batches expired before",
)


async def database_now(conn: AsyncConnection) -> datetime:
    """The database's clock: cutoffs compare with timestamps it wrote (`now()` defaults)."""
    value = await conn.scalar(text("SELECT now()"))
    assert isinstance(value, datetime)
    return value


async def count_prunable(conn: AsyncConnection, rule: PruneRule, cutoff: datetime) -> int:
    return int(await conn.scalar(rule.count, {"cutoff": cutoff}) or 0)


async def delete_batch(
    conn: AsyncConnection, rule: PruneRule, cutoff: datetime, after: tuple[Any, ...], limit: int
) -> list[tuple[Any, ...]]:
    """Delete up to `limit` prunable rows with keys after `after`; their keys, ascending.

    Python orders text keys by code point, the database by its collation: the last key
    here may then sort before the batch's true last one, which makes the next batch
    read past keys already gone, never skip a row.
    """
    keys = {f"after_{i}": value for i, value in enumerate(after)}
    rows = await conn.execute(rule.delete_batch, {"cutoff": cutoff, "limit": limit, **keys})
    return sorted(tuple(row) for row in rows)
