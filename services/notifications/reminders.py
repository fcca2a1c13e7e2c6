"""Credits about to expire: which batches to remind about, as one event per user.

A batch is reminded about once, ever: `expiry_reminders` records it after the event
is published. The event id is a UUIDv5 of the user and the batch ids, so a run that
dies between publishing and recording publishes the very same event next time and
the notify worker's dedupe (by event id) sends one email.
"""

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.commands import command_id_for
from schemas.events import CreditsExpiring, CreditsExpiringPayload, ExpiringBatch
from services.notifications.store import EXPIRING, LATEST_EMAILS, RECORD


def reminder_id(user_id: str, batch_ids: Sequence[uuid.UUID]) -> uuid.UUID:
    return command_id_for("credits-expiring", user_id, *sorted(str(b) for b in batch_ids))


async def due_reminders(
    engine: AsyncEngine, within_days: int, limit: int = 100_000
) -> list[CreditsExpiring]:
    """One `credits.expiring` event per user with batches not reminded about yet."""
    async with engine.connect() as conn:
        rows = (await conn.execute(EXPIRING, {"days": within_days, "limit": limit})).all()
        per_user: dict[str, list[ExpiringBatch]] = defaultdict(list)
        for batch_id, user_id, remaining, expires_at in rows:
            per_user[user_id].append(
                ExpiringBatch(batch_id=batch_id, remaining=remaining, expires_at=expires_at)
            )
        emails: dict[str, str] = {}
        if per_user:
            found = await conn.execute(LATEST_EMAILS, {"users": list(per_user)})
            emails = {user_id: email for user_id, email in found.all()}
    return [
        CreditsExpiring(
            id=reminder_id(user_id, [b.batch_id for b in batches]),
            user_id=user_id,
            source="pika-payment-remind",
            payload=CreditsExpiringPayload(
                batches=batches,
                credits=sum(b.remaining for b in batches),
                within_days=within_days,
                email=emails.get(user_id),
            ),
        )
        for user_id, batches in per_user.items()
    ]


async def record_reminded(engine: AsyncEngine, reminders: Sequence[CreditsExpiring]) -> None:
    batches: list[uuid.UUID] = []
    users: list[str] = []
    events: list[uuid.UUID] = []
    for reminder in reminders:
        for batch in reminder.payload.batches:
            batches.append(batch.batch_id)
            users.append(reminder.user_id)
            events.append(reminder.id)
    async with engine.begin() as conn:
        await conn.execute(RECORD, {"batches": batches, "users": users, "events": events})
