"""Validate, reserve, attach, redeem, release: the life of one use of a promo code.

- `validate` reads only (any number of calls change nothing).
- `reserve` (apply) locks the code's row, counts live uses and inserts a reservation in
  one transaction, so N concurrent applies of a code with k uses left give exactly k.
- A purchase or subscribe *attaches* a reservation (or reserves on the spot when given
  `promoCode`), which extends its life while the payment is under way.
- The ledger worker *redeems* it when the payment succeeds (same transaction as the
  grant) and *releases* it when the payment fails. Abandoned ones simply expire:
  live uses count only reservations whose `expires_at` is ahead.
- A payment that succeeds after its reservation was released or lapsed (Stripe keeps a
  failed PaymentIntent payable) is redeemed all the same, past the code's limits if it
  must be: no discounted money arrives uncounted. A use past a limit is flagged for a
  human (`promo_over_limit`, see `services.fraud.checks.after_promo_redeemed`).
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.promos.codes import find_by_code
from services.promos.reservation_store import (
    ATTACH,
    FIND_RESERVATION,
    HAD_TRIAL,
    HAS_PURCHASED,
    INSERT_RESERVATION,
    REDEEM,
    RELEASE,
    TIDY,
    USAGE,
)
from services.promos.rules import Preview, Target, Usage, evaluate, refuse

# A released (payment failed) or lapsed reservation is redeemed too: its PaymentIntent
# stayed payable, and a discounted payment that succeeds always counts its use. The
# release's `released_at` stays, so a late redemption is told from a timely one.


async def _preview(conn: AsyncConnection, code: dict[str, Any] | None, target: Target, user_id: str,
                   now: datetime) -> Preview:
    usage = Usage(0, 0, False)
    if code is not None:
        counts = (await conn.execute(USAGE, {"code": code["id"], "u": user_id, "now": now})).one()
        purchased = bool(await conn.scalar(HAS_PURCHASED, {"u": user_id}))
        had_trial = target.kind == "plan" and bool(await conn.scalar(HAD_TRIAL, {"u": user_id}))
        usage = Usage(counts.total, counts.by_user, purchased, had_trial)
    return evaluate(code, target, usage, user_id, now)


async def validate(conn: AsyncConnection, code: str, target: Target, user_id: str,
                   now: datetime) -> Preview:
    """The preview, or PAY003 with its reason; reads only."""
    return await _preview(conn, await find_by_code(conn, code), target, user_id, now)


async def reserve(
    conn: AsyncConnection,
    code: str,
    target: Target,
    user_id: str,
    *,
    reservation_id: uuid.UUID,
    ttl: timedelta,
    now: datetime,
    source: str | None = None,
) -> tuple[dict[str, Any], Preview]:
    """Reserve one use (call inside a transaction). The same id twice answers the first."""
    existing = (await conn.execute(FIND_RESERVATION, {"id": reservation_id})).mappings().first()
    if existing is not None:
        return dict(existing), _stored_preview(dict(existing), target)
    promo = await find_by_code(conn, code, lock=True)  # serializes applies of one code
    preview = await _preview(conn, promo, target, user_id, now)
    assert promo is not None
    await conn.execute(INSERT_RESERVATION, {
        "id": reservation_id, "code": promo["id"], "u": user_id, "kind": target.kind,
        "target": target.id, "discount": preview.discount, "currency": target.currency,
        "bonus": preview.bonus_credits, "trial": preview.trial_days, "expires": now + ttl,
        "source": source,
    })
    row = (await conn.execute(FIND_RESERVATION, {"id": reservation_id})).mappings().one()
    return dict(row), preview


def _stored_preview(reservation: dict[str, Any], target: Target) -> Preview:
    return Preview(
        original=target.price,
        discount=reservation["discount_minor"],
        final=target.price - reservation["discount_minor"],
        currency=target.currency,
        bonus_credits=reservation["bonus_credits"],
        bonus_expiry_days=reservation["bonus_expiry_days"],
        trial_days=reservation["trial_days"],
    )


async def attach(
    conn: AsyncConnection,
    reservation_id: uuid.UUID,
    target: Target,
    user_id: str,
    *,
    now: datetime,
    ttl: timedelta,
    purchase_id: uuid.UUID | None = None,
    membership_id: uuid.UUID | None = None,
) -> tuple[dict[str, Any], Preview]:
    """Use a reservation for this purchase or subscription; refused if it is not the
    caller's, not for this target, or no longer reserved."""
    row = (await conn.execute(FIND_RESERVATION, {"id": reservation_id})).mappings().first()
    if row is None or row["user_id"] != user_id:
        raise refuse("unknown", "no such promo reservation", redemptionId=str(reservation_id))
    if (row["target_kind"], row["target_id"]) != (target.kind, target.id):
        raise refuse("not_applicable", f"the reservation is for {row['target_kind']} {row['target_id']}")
    mine = (row["purchase_id"] or row["membership_id"]) in (None, purchase_id, membership_id)
    if row["status"] != "reserved" or row["expires_at"] <= now or not mine:
        raise refuse("expired", "the reservation is no longer held; apply the code again")
    await conn.execute(ATTACH, {"id": reservation_id, "purchase": purchase_id,
                                "membership": membership_id, "until": now + ttl})
    return dict(row), _stored_preview(dict(row), target)


async def redeem(conn: AsyncConnection, reservation_id: uuid.UUID | None) -> bool:
    """The payment succeeded: the use is final, even if the reservation had lapsed or was
    released by a failed payment (the customer paid the discounted price, so the use is
    honoured and counted, past the code's limits if it must be)."""
    if reservation_id is None:
        return False
    return await conn.scalar(REDEEM, {"id": reservation_id}) is not None


async def release(conn: AsyncConnection, reservation_id: uuid.UUID | None, why: str) -> bool:
    if reservation_id is None:
        return False
    return await conn.scalar(RELEASE, {"id": reservation_id, "why": why}) is not None


async def tidy_expired(conn: AsyncConnection, now: datetime) -> int:
    """Mark lapsed reservations released (the counts already ignore them)."""
    result = await conn.execute(TIDY, {"now": now})
    return int(result.rowcount or 0)

