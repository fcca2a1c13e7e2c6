"""The `outbox`: events written in the ledger's transaction, published after commit.

The ledger inserts rows (SQLAlchemy, inside its unit of work) and wakes the relay at
commit; the relay reads and marks them on its own asyncpg session (it holds an
advisory lock and LISTENs there), so its two statements are asyncpg's `$n` form.
"""

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CHANNEL = "pika_outbox"
INSERT_OUTBOX = text(
    """
    INSERT INTO outbox (event_id, command_id, topic, key, event_type, payload, trace_context)
    SELECT event_id, command_id, topic, key, type, payload, trace_context
      FROM unnest(CAST(:event_id AS uuid[]), CAST(:command_id AS uuid[]),
                  CAST(:topic AS text[]), CAST(:key AS text[]),
                  CAST(:type AS text[]), CAST(:payload AS jsonb[]),
                  CAST(:trace_context AS text[]))
             WITH ORDINALITY AS o(event_id, command_id, topic, key, type, payload, trace_context, n)
    ORDER BY n
    """
)
# Wakes the relay at commit; a lost notification only delays it to its next poll.
NOTIFY_OUTBOX = text(f"NOTIFY {CHANNEL}")
FETCH_UNSENT = """
    SELECT id, topic, key, payload::text AS payload, event_type, trace_context,
           extract(epoch FROM now() - created_at) AS age
      FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1
"""
MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])"
TRY_RELAY_LOCK = "SELECT pg_try_advisory_lock($1)"

OutboxRow = tuple[uuid.UUID, uuid.UUID | None, str, str, str, str, str | None]
"""(event id, command id, topic, key, event type, JSON payload, W3C traceparent or None)."""


def outbox_rows(rows: Sequence[OutboxRow]) -> dict[str, Any]:
    """INSERT_OUTBOX' parameters, in publish order."""
    return {
        "event_id": [r[0] for r in rows],
        "command_id": [r[1] for r in rows],
        "topic": [r[2] for r in rows],
        "key": [r[3] for r in rows],
        "type": [r[4] for r in rows],
        "payload": [r[5] for r in rows],
        "trace_context": [r[6] for r in rows],
    }


async def insert_outbox(conn: AsyncConnection, rows: Sequence[OutboxRow]) -> None:
    """Rows in publish order."""
    if not rows:
        return
    await conn.execute(INSERT_OUTBOX, outbox_rows(rows))


async def try_relay_lock(conn: asyncpg.Connection, key: int) -> bool:
    """The session-level advisory lock that makes one relay replica the active one; it
    lasts as long as this connection, so a relay that dies frees it."""
    return bool(await conn.fetchval(TRY_RELAY_LOCK, key))


async def fetch_unsent(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Up to `limit` unsent rows in id order (per user, commit order: a user's account
    row lock serialises their transactions), each with its age in seconds."""
    return list(await conn.fetch(FETCH_UNSENT, limit))


async def mark_sent(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    await conn.execute(MARK_SENT, list(ids))
