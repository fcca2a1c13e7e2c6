"""Waking the ingress's waiting HTTP writes: NOTIFY of the command ids a batch answered.

The ledger worker calls `notify_answered` inside the transaction that stores the
batch's outcomes, so Postgres delivers the notifications at commit, when the stored
answers are visible, and never for a batch that rolled back. Each ingress process
LISTENs on CHANNEL on one connection (ingress.reply_waiters) and wakes the requests
waiting for those ids; they read the stored answer themselves, so a notification only
ever says "look again". A payload is at most 8000 bytes: the ids go in chunks of
IDS_PER_NOTIFY, all chunks in one statement.
"""

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CHANNEL = "pika_replies"
IDS_PER_NOTIFY = 200  # 200 x 37 bytes (a UUID and a comma) = 7,400 < 8,000
NOTIFY_ANSWERED = text(
    "SELECT pg_notify(:channel, payload) FROM unnest(CAST(:payloads AS text[])) AS payload"
)


def payloads(command_ids: Sequence[uuid.UUID]) -> list[str]:
    """Comma-separated ids, IDS_PER_NOTIFY per payload."""
    ids = [str(i) for i in command_ids]
    return [",".join(ids[at : at + IDS_PER_NOTIFY]) for at in range(0, len(ids), IDS_PER_NOTIFY)]


def command_ids_of(payload: str) -> list[uuid.UUID]:
    """The ids of one notification; anything that is not an id is skipped."""
    found = []
    for part in payload.split(","):
        try:
            found.append(uuid.UUID(part))
        except ValueError:
            continue
    return found


async def notify_answered(conn: AsyncConnection, command_ids: Sequence[uuid.UUID]) -> None:
    """Queue the notifications of `command_ids`; Postgres sends them at commit."""
    if command_ids:
        await conn.execute(NOTIFY_ANSWERED, {"channel": CHANNEL, "payloads": payloads(command_ids)})
