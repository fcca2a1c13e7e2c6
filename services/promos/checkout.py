"""Promo codes at the start of a purchase or subscription (the ingress side).

A code given inline is reserved on the spot, with a reservation id derived from the
purchase (a retried request finds the same one); a `redemptionId` from an earlier
apply is attached. If Stripe then refuses, an inline reservation is released and an
attached one detached, so the customer can try again with the same code.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.commands import command_id_for
from services.promos import reservations
from services.promos.reservation_store import DETACH
from services.promos.rules import Preview, Target
from services.settings import Settings


@dataclass(frozen=True)
class PromoTerms:
    reservation_id: uuid.UUID
    code: str
    preview: Preview
    inline: bool


async def promo_terms(
    engine: AsyncEngine,
    settings: Settings,
    target: Target,
    user_id: str,
    *,
    owner_id: uuid.UUID,
    promo_code: str | None,
    redemption_id: uuid.UUID | None,
    source: str | None = None,
) -> PromoTerms | None:
    """Reserve or attach the caller's promo for the purchase / membership `owner_id`."""
    if promo_code is None and redemption_id is None:
        return None
    now = datetime.now(UTC)
    ttl = timedelta(seconds=settings.promo_reservation_ttl_seconds)
    owner = {"purchase_id": owner_id} if target.kind == "pack" else {"membership_id": owner_id}
    async with engine.begin() as conn:
        if redemption_id is not None:
            row, preview = await reservations.attach(
                conn, redemption_id, target, user_id, now=now, ttl=ttl, **owner
            )
            return PromoTerms(redemption_id, row["code"], preview, inline=False)
        assert promo_code is not None
        reservation_id = command_id_for("promo", str(owner_id))
        row, preview = await reservations.reserve(
            conn, promo_code, target, user_id, reservation_id=reservation_id, ttl=ttl, now=now,
            source=source,
        )
        await reservations.attach(conn, reservation_id, target, user_id, now=now, ttl=ttl, **owner)
        return PromoTerms(reservation_id, row["code"], preview, inline=True)


async def undo_promo(engine: AsyncEngine, terms: PromoTerms | None) -> None:
    """Stripe refused the payment's creation: free the code for the next try."""
    if terms is None:
        return
    async with engine.begin() as conn:
        if terms.inline:
            await reservations.release(conn, terms.reservation_id, "payment_not_started")
        else:
            await conn.execute(DETACH, {"id": terms.reservation_id})
