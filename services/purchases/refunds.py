"""Refunding a purchase's money (admin): Stripe first, then the ledger takes back credits.

The money moves in Stripe; the credits move only through the ledger worker, with the
same `purchase.revoke` command a `charge.refunded` webhook produces. The refund's
idempotency key is the HTTP command id, so a retried request refunds once.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.commands import RevokePurchase, RevokePurchasePayload
from services.errors import InvalidState, NotFound
from services.purchases.ports import PaymentProvider
from services.purchases.purchase_store import PURCHASE_BY_ID, PURCHASE_OF_GRANT

PAID = ("succeeded", "refunded")


@dataclass(frozen=True)
class MoneyRefund:
    """What one refund did in Stripe, and the command that takes the credits back."""

    command: RevokePurchase
    amount: int
    """Minor units this refund gave back (not the purchase's running total)."""
    currency: str


async def purchase_refund(
    engine: AsyncEngine,
    provider: PaymentProvider,
    *,
    user_id: str,
    transaction_id: uuid.UUID,
    amount: int | None,
    command: dict[str, Any],
) -> RevokePurchase | None:
    """The revoke command after refunding in Stripe; None if the transaction is no purchase."""
    async with engine.connect() as conn:
        purchase = (
            await conn.execute(PURCHASE_OF_GRANT, {"tx": transaction_id, "u": user_id})
        ).mappings().first()
    if purchase is None:
        return None
    return (await _refund(provider, dict(purchase), user_id, amount, command)).command


async def refund_purchase_money(
    engine: AsyncEngine,
    provider: PaymentProvider,
    *,
    user_id: str,
    purchase_id: uuid.UUID,
    amount: int | None,
    command: dict[str, Any],
) -> MoneyRefund:
    """Refund `amount` (default: all that is left) of the user's purchase in Stripe.

    PAY008 for an unknown purchase or another user's; PAY014 for one not paid, or when
    less than `amount` is left to refund. Nothing is asked of Stripe in either case.
    """
    async with engine.connect() as conn:
        purchase = (
            await conn.execute(PURCHASE_BY_ID, {"id": purchase_id, "u": user_id})
        ).mappings().first()
    if purchase is None:
        raise NotFound("no such purchase", purchaseId=str(purchase_id))
    if purchase["status"] not in PAID or purchase["payment_intent_id"] is None:
        raise InvalidState(
            f"the purchase is {purchase['status']}: only a paid purchase can be refunded",
            purchaseId=str(purchase_id),
            status=purchase["status"],
        )
    return await _refund(provider, dict(purchase), user_id, amount, command)


async def _refund(
    provider: PaymentProvider,
    purchase: dict[str, Any],
    user_id: str,
    amount: int | None,
    command: dict[str, Any],
) -> MoneyRefund:
    left = purchase["amount_minor"] - purchase["refunded_minor"]
    money = amount or left
    if left <= 0 or money > left:
        raise InvalidState(
            f"{money} asked, {left} of the purchase's money is left to refund",
            refundable=left,
            requested=money,
        )
    refund_id = await provider.refund(
        payment_intent_id=purchase["payment_intent_id"],
        amount=money,
        idempotency_key=f"pika-refund-{command['id']}",
    )
    currency = purchase["currency"].strip()
    revoke = RevokePurchase(
        **command,
        user_id=user_id,
        payload=RevokePurchasePayload(
            payment_intent_id=purchase["payment_intent_id"],
            amount_refunded=purchase["refunded_minor"] + money,
            currency=currency,
            stripe_event_id=refund_id,
        ),
    )
    return MoneyRefund(revoke, money, currency)
