"""`python -m devtools seed`: demo credit packs, membership plans and promo codes, and demo
accounts with credits applied through the ledger itself.

Command ids, pack, plan and code ids are fixed, so seeding twice changes nothing.
"""

from collections.abc import Callable
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
from services.bootstrap import command_registry
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
DEMO_PLANS = (
    # id, name, price in minor units, currency, credits per month, rollover, trial days, credits
    ("plan_basic", "Basic: 8 classes a month", 5900, "usd", 8, "none", 0, 0),
    ("plan_plus", "Plus: 16 a month, up to 4 roll over", 9900, "usd", 16, "capped:4", 7, 2),
    ("plan_unlimited", "Studio: 40 a month, one cycle", 19900, "usd", 40, "one_cycle", 0, 0),
)
SEED_PLANS = text(
    """
    INSERT INTO membership_plans (id, name, price_minor, currency, interval, credits_per_period,
                                  rollover, trial_days, trial_credits)
    SELECT i, n, p, c, 'month', k, r, t, tc
      FROM unnest(CAST(:id AS text[]), CAST(:name AS text[]), CAST(:price AS bigint[]),
                  CAST(:currency AS text[]), CAST(:credits AS bigint[]), CAST(:rollover AS text[]),
                  CAST(:trial AS int[]), CAST(:trial_credits AS bigint[]))
           AS d(i, n, p, c, k, r, t, tc)
    ON CONFLICT (id) DO NOTHING
    """
)
DEMO_PROMOS = (
    # code, kind, percent off, bonus credits, trial days, new customers only
    ("WELCOME10", "percentage", 10, None, None, True),
    ("BONUS5", "bonus_credits", None, 5, None, False),
    ("TRIAL14", "free_trial", None, None, 14, False),
)
SEED_PROMOS = text(
    """
    INSERT INTO promo_codes (id, code, kind, percent_off, bonus_credits, trial_days,
                             new_customers_only)
    VALUES (:id, :code, :kind, :pct, :bonus, :trial, :new)
    ON CONFLICT (code) DO NOTHING
    """
)
SEED_PACKS = text(
    """
    INSERT INTO credit_packs (id, name, credits, bonus_credits, price_minor, currency)
    SELECT * FROM unnest(CAST(:id AS text[]), CAST(:name AS text[]), CAST(:credits AS bigint[]),
                         CAST(:bonus AS bigint[]), CAST(:price AS bigint[]), CAST(:currency AS text[]))
    ON CONFLICT (id) DO NOTHING
    """
)


SEED_STEPS = 2  # the catalogue, then the demo accounts through the ledger


async def seed(
    settings: Settings, progress: Callable[[int, int], None] | None = None
) -> tuple[int, int]:
    """Returns (applied, already present); `progress(done, SEED_STEPS)` after each step."""
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
            plan_columns = list(zip(*DEMO_PLANS, strict=True))
            names = ("id", "name", "price", "currency", "credits", "rollover", "trial", "trial_credits")
            await conn.execute(SEED_PLANS, dict(zip(names, plan_columns, strict=True)))
            for code, kind, pct, bonus, trial, new in DEMO_PROMOS:
                await conn.execute(SEED_PROMOS, {
                    "id": command_id_for("seed", "promo", code), "code": code, "kind": kind,
                    "pct": pct, "bonus": bonus, "trial": trial, "new": new,
                })
        if progress:
            progress(1, SEED_STEPS)
        report = await apply_commands(engine, settings, commands, command_registry())
        if progress:
            progress(2, SEED_STEPS)
    finally:
        await engine.dispose()
    return report.applied, report.duplicates
