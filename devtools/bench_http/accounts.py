"""The users the reads and grants spread over, funded before any clock starts.

Every user gets three grants (three open batches with different expiries, as the
charge bench funds them) through set-based SQL, then HISTORY_CHARGES small charges
through the ledger's own `apply_commands`, so `GET /history?limit=20` returns a full
page and a balance read lists the batches a real account has. Tokens are minted as
`python -m devtools token` mints them (devtools.tokens), one per user.
"""

import uuid
from datetime import UTC, datetime

from devtools.bench.funding import fund
from devtools.bench.phases import mark_backlog_sent
from devtools.bench.workload import funding_rounds, user_name
from devtools.tokens import make_token
from schemas.commands import ChargeCredits, ChargePayload
from services.bootstrap import command_registry
from services.db import make_engine
from services.ledger.apply import apply_commands
from services.settings import Settings

HISTORY_CHARGES = 17  # with the three grants: a full page of 20 history items per user
PHASE = "http"


def users(count: int) -> list[str]:
    return [user_name(PHASE, i) for i in range(count)]


async def fund_users(settings: Settings, count: int) -> None:
    """Three batches and a page of history for each of `count` users; their events are
    marked sent (the relay of the write phase starts without a backlog)."""
    need = {i: 1000 for i in range(count)}
    await fund(settings, {PHASE: funding_rounds(PHASE, need, datetime.now(UTC))})
    registry = command_registry()
    engine = make_engine(settings, pool_size=1)
    try:
        for round_ in range(HISTORY_CHARGES):
            charges = [
                ChargeCredits(id=uuid.uuid4(), user_id=user, source="bench-http",
                              payload=ChargePayload(credits=1, reference=f"bench-http-{round_}"))
                for user in users(count)
            ]
            await apply_commands(engine, settings, charges, registry)
    finally:
        await engine.dispose()
    await mark_backlog_sent(settings)


def user_tokens(settings: Settings, subjects: list[str], ttl: int) -> list[str]:
    return [
        make_token(settings.payment_jwt_secret, subject, ["user"], ttl,
                   audience=settings.payment_jwt_audience, issuer=settings.payment_jwt_issuer)
        for subject in subjects
    ]


def admin_token(settings: Settings, ttl: int) -> str:
    return make_token(settings.payment_jwt_secret, "bench-http-admin", ["admin"], ttl,
                      audience=settings.payment_jwt_audience, issuer=settings.payment_jwt_issuer)
