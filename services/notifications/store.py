"""`sent_notifications`: the dedupe record and the send queue of the notify worker.

Protocol for one (event, template): **claim** (insert a `pending` row; a conflict
means this event was handled before, so nothing is sent again), **send**, **mark**
(`sent`). Every send first takes a lease on the row (`next_attempt_at` moves into
the future), so replicas never send the same row at once, and a row whose sender
died is taken up again when its lease runs out.

Which way it errs: towards **at least once**. A crash (or a lost database) after the
SMTP server accepted the message but before `sent` is committed leaves the row
pending; when the lease ends it is sent again, so in that window (milliseconds
wide) a customer can get a second copy, with the same Message-ID, which mail
clients use to collapse duplicates. The other order (mark, then send) would lose
the email to any crash during the SMTP exchange, a far wider window; a receipt is
worth more than the nuisance of a rare duplicate. Redelivered Kafka messages never
send twice: their claim conflicts.
"""

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

RECIPIENT = text(
    """
    SELECT email FROM purchases
     WHERE user_id = :user AND email IS NOT NULL
     ORDER BY (id = CAST(:purchase AS uuid)) DESC NULLS LAST, created_at DESC
     LIMIT 1
    """
)
CLAIM = text(
    """
    INSERT INTO sent_notifications (event_id, template, user_id, recipient, status,
                                    next_attempt_at, event)
    VALUES (:event_id, :template, :user, :recipient, 'pending', now(), :event)
    ON CONFLICT (event_id, template) DO NOTHING
    """
)
SKIP = text(
    """
    INSERT INTO sent_notifications (event_id, template, user_id, status, last_error, sent_at)
    VALUES (:event_id, :template, :user, 'skipped', :reason, now())
    ON CONFLICT (event_id, template) DO NOTHING
    """
)
TAKE_DUE = text(
    """
    UPDATE sent_notifications s
       SET next_attempt_at = now() + make_interval(secs => :lease)
      FROM (SELECT event_id, template FROM sent_notifications
             WHERE status = 'pending' AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT :limit
             FOR UPDATE SKIP LOCKED) due
     WHERE s.event_id = due.event_id AND s.template = due.template
    RETURNING s.event_id, s.template, s.user_id, s.recipient, s.attempts, s.event
    """
)
MARK_SENT = text(
    """
    UPDATE sent_notifications
       SET status = 'sent', sent_at = now(), next_attempt_at = NULL, event = NULL,
           last_error = NULL
     WHERE event_id = :event_id AND template = :template AND status = 'pending'
    """
)
RESCHEDULE = text(
    """
    UPDATE sent_notifications
       SET attempts = :attempts, last_error = :error,
           next_attempt_at = now() + make_interval(secs => :delay)
     WHERE event_id = :event_id AND template = :template AND status = 'pending'
    """
)
MARK_FAILED = text(
    """
    UPDATE sent_notifications
       SET status = 'failed', attempts = :attempts, last_error = :error, next_attempt_at = NULL,
           event = NULL
     WHERE event_id = :event_id AND template = :template AND status = 'pending'
    """
)


@dataclass(frozen=True)
class Due:
    """A pending email whose lease this sender now holds."""

    event_id: uuid.UUID
    template: str
    user_id: str
    recipient: str
    attempts: int
    event: str

    def key(self) -> dict[str, object]:
        return {"event_id": self.event_id, "template": self.template}


async def recipient_for(
    conn: AsyncConnection, user_id: str, purchase_id: uuid.UUID | None
) -> str | None:
    """The address the user gave with this purchase, else with their latest purchase."""
    params = {"user": user_id, "purchase": str(purchase_id) if purchase_id else None}
    email: str | None = (await conn.execute(RECIPIENT, params)).scalar()
    return email


async def claim(
    conn: AsyncConnection, event_id: uuid.UUID, template: str, user_id: str, recipient: str,
    event: str,
) -> bool:
    """Queue the email; False when this (event, template) was claimed before."""
    result = await conn.execute(
        CLAIM,
        {"event_id": event_id, "template": template, "user": user_id, "recipient": recipient,
         "event": event},
    )
    return bool(result.rowcount)


async def record_skip(
    conn: AsyncConnection, event_id: uuid.UUID, template: str, user_id: str, reason: str
) -> bool:
    result = await conn.execute(
        SKIP, {"event_id": event_id, "template": template, "user": user_id, "reason": reason}
    )
    return bool(result.rowcount)


async def take_due(engine: AsyncEngine, limit: int, lease_seconds: float) -> list[Due]:
    async with engine.begin() as conn:
        rows = (await conn.execute(TAKE_DUE, {"limit": limit, "lease": lease_seconds})).all()
    return [Due(*row) for row in rows]


async def mark_sent(engine: AsyncEngine, due: Due) -> None:
    async with engine.begin() as conn:
        await conn.execute(MARK_SENT, due.key())


async def reschedule(engine: AsyncEngine, due: Due, attempts: int, delay: float, error: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            RESCHEDULE, {**due.key(), "attempts": attempts, "delay": delay, "error": error[:1000]}
        )


async def mark_failed(engine: AsyncEngine, due: Due, attempts: int, error: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(MARK_FAILED, {**due.key(), "attempts": attempts, "error": error[:1000]})

# Expiry reminders (`services.notifications.reminders`): which batches expire soon,
# whom to tell, and the record that a reminder went out.
EXPIRING = text(
    """
    SELECT b.id, b.user_id, b.remaining, b.expires_at
      FROM credit_batches b
     WHERE b.status = 'open' AND b.remaining > 0
       AND b.expires_at > now() AND b.expires_at <= now() + make_interval(days => :days)
       AND NOT EXISTS (SELECT 1 FROM expiry_reminders r WHERE r.batch_id = b.id)
     ORDER BY b.user_id, b.expires_at, b.id
     LIMIT :limit
    """
)

LATEST_EMAILS = text(
    """
    SELECT DISTINCT ON (user_id) user_id, email FROM purchases
     WHERE user_id = ANY(CAST(:users AS text[])) AND email IS NOT NULL
     ORDER BY user_id, created_at DESC
    """
)

RECORD = text(
    """
    INSERT INTO expiry_reminders (batch_id, user_id, event_id)
    SELECT * FROM unnest(CAST(:batches AS uuid[]), CAST(:users AS text[]),
                         CAST(:events AS uuid[]))
    ON CONFLICT (batch_id) DO NOTHING
    """
)
