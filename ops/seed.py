"""`pika-payment seed`: demo credit packs, and demo accounts with credits applied
through the ledger itself.

Command ids and pack ids are fixed, so seeding twice changes nothing. Membership plans
join the seed with their issue.
"""

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

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
DEMO_PACKS = (
    # id, name, credits, bonus credits, price in minor units, currency
    ("pack_10", "Starter: 10 credits", 10, 0, 1000, "usd"),
    ("pack_50", "Regular: 50 credits + 5 bonus", 50, 5, 4500, "usd"),
    ("pack_100", "Studio: 100 credits + 15 bonus", 100, 15, 8500, "usd"),
)
SEED_PACKS = text(
    """
    INSERT INTO credit_packs (id, name, credits, bonus_credits, price_minor, currency)
    SELECT * FROM unnest(CAST(:id AS text[]), CAST(:name AS text[]), CAST(:credits AS bigint[]),
                         CAST(:bonus AS bigint[]), CAST(:price AS bigint[]), CAST(:currency AS text[]))
    ON CONFLICT (id) DO NOTHING
    """
)


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
                    expires_at=datetime.now(UTC) + timedelta(days=30),
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
        async with engine.begin() as conn:
            columns = list(zip(*DEMO_PACKS, strict=True))
            await conn.execute(
                SEED_PACKS,
                dict(zip(("id", "name", "credits", "bonus", "price", "currency"), columns, strict=True)),
            )
        report = await apply_commands(engine, settings, commands)
    finally:
        await engine.dispose()
    return report.applied, report.duplicates
