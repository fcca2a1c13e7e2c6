"""`pika-payment seed`: demo accounts with credits, applied through the ledger itself.

Command ids are fixed, so seeding twice changes nothing. Credit packs and membership
plans join the seed when their issues land (they have no tables yet).
"""

from datetime import UTC, datetime, timedelta

from schemas.commands import (
    ChargeCredits,
    ChargePayload,
    CommandEnvelope,
    GrantCredits,
    GrantPayload,
    command_id_for,
)
from services.db import make_engine
from services.ledger.apply import apply_commands
from services.settings import Settings

DEMO_USERS = ("demo-alice", "demo-bob", "demo-carol")


async def seed(settings: Settings) -> tuple[int, int]:
    """Returns (applied, already present)."""
    commands: list[CommandEnvelope] = []
    for index, user in enumerate(DEMO_USERS):
        commands.append(
            GrantCredits(
                id=command_id_for("seed", user, "welcome"),
                user_id=user,
                source="pika-payment-seed",
                payload=GrantPayload(credits=50 + 25 * index, reason="demo welcome credits"),
            )
        )
        commands.append(
            GrantCredits(
                id=command_id_for("seed", user, "promo"),
                user_id=user,
                source="pika-payment-seed",
                payload=GrantPayload(
                    credits=10,
                    reason="demo promotion, expires soon",
                    expires_at=datetime(2030, 1, 1, tzinfo=UTC) - timedelta(days=1),
                ),
            )
        )
    commands.append(
        ChargeCredits(
            id=command_id_for("seed", DEMO_USERS[0], "booking-demo-1"),
            user_id=DEMO_USERS[0],
            source="booking-service",
            payload=ChargePayload(credits=3, reference="booking-demo-1"),
        )
    )
    engine = make_engine(settings, pool_size=1)
    try:
        report = await apply_commands(engine, settings, commands)
    finally:
        await engine.dispose()
    return report.applied, report.duplicates
