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

`command_evidence` is append-only (a trigger refuses DELETE) and is never pruned.

Each table is walked by its primary key (keyset): a run reads every candidate once,
whatever the table's size, and each DELETE is its own short transaction.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class PruneRule:
    """One table's prunable rows: a count (dry run) and a batch delete from a key on."""

    table: str
    count: TextClause
    delete_batch: TextClause
    first_key: Any


def _rule(table: str, key: str, prunable: str, first_key: Any) -> PruneRule:
    """The two statements of one table; `prunable` is its WHERE condition (fixed text)."""
    return PruneRule(
        table,
        text(f"SELECT count(*) FROM {table} WHERE {prunable}"),
        text(
            f"DELETE FROM {table} WHERE {key} IN ("
            f" SELECT {key} FROM {table} WHERE {key} > :after AND {prunable}"
            f" ORDER BY {key} LIMIT :limit) RETURNING {key}"
        ),
        first_key,
    )


# `sent_at < cutoff` is false for unsent rows (NULL): they are never deleted.
OUTBOX = _rule("outbox", "id", "sent_at < :cutoff", 0)
PROCESSED_COMMANDS = _rule(
    "processed_commands",
    "command_id",
    "status = 'rejected' AND processed_at < :cutoff",
    uuid.UUID(int=0),
)
STRIPE_EVENTS = _rule("stripe_events", "event_id", "received_at < :cutoff", "")


async def database_now(conn: AsyncConnection) -> datetime:
    """The database's clock: cutoffs compare with timestamps it wrote (`now()` defaults)."""
    value = await conn.scalar(text("SELECT now()"))
    assert isinstance(value, datetime)
    return value


async def count_prunable(conn: AsyncConnection, rule: PruneRule, cutoff: datetime) -> int:
    return int(await conn.scalar(rule.count, {"cutoff": cutoff}) or 0)


async def delete_batch(
    conn: AsyncConnection, rule: PruneRule, cutoff: datetime, after: Any, limit: int
) -> list[Any]:
    """Delete up to `limit` prunable rows with keys after `after`; their keys, ascending.

    Python orders text keys by code point, the database by its collation: the last key
    here may then sort before the batch's true last one, which makes the next batch
    read past keys already gone, never skip a row.
    """
    rows = await conn.execute(
        rule.delete_batch, {"cutoff": cutoff, "after": after, "limit": limit}
    )
    return sorted(row[0] for row in rows)
