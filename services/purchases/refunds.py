"""Refunding a purchase's money (admin): Stripe first, then the ledger takes back credits.

The money moves in Stripe; the credits move only through the ledger worker, with the
same `purchase.revoke` command a `charge.refunded` webhook produces. The refund's
idempotency key is the HTTP command id, so a retried request refunds once.
"""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.commands import RevokePurchase, RevokePurchasePayload
from services.errors import InvalidState
from services.purchases.ports import PaymentProvider
from services.purchases.purchase_store import PURCHASE_OF_GRANT


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
    return RevokePurchase(
        **command,
        user_id=user_id,
        payload=RevokePurchasePayload(
            payment_intent_id=purchase["payment_intent_id"],
            amount_refunded=purchase["refunded_minor"] + money,
            currency=purchase["currency"].strip(),
            stripe_event_id=refund_id,
        ),
    )
