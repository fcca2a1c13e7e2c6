"""Ledger-worker handlers of verified Stripe payments.

A PaymentIntent grants at most once, however many events mention it: the purchase
row is locked and its status checked, and the database refuses a second
CREDIT_PURCHASE for the same intent (unique index).
"""

from typing import Any

from sqlalchemy import text

from schemas.commands import ConfirmPurchase, FailPurchase
from schemas.events import PaymentFailed, PaymentPayload, PaymentSucceeded, ReceiptPayload, ReceiptRequested
from services.errors import NotFound
from services.errors import PaymentFailed as PaymentFailedError
from services.ledger.context import LedgerContext, Outcome
from services.ledger.handlers import APPLIED, Handler, grant_batch
from services.ledger.models import PROMOTIONAL, PURCHASED

LOCK_PURCHASE = text(
    """
    SELECT p.id, p.user_id, p.pack_id, p.credits, p.bonus_credits, p.amount_minor, p.currency,
           p.status, p.payment_intent_id, p.email, c.name AS pack_name
      FROM purchases p JOIN credit_packs c ON c.id = p.pack_id
     WHERE p.payment_intent_id = :pi FOR UPDATE OF p
    """
)
MARK = text(
    "UPDATE purchases SET status = :status, grant_transaction_id = :tx, failure_code = :code, "
    "updated_at = now() WHERE id = :id"
)


async def _purchase(ctx: LedgerContext, user_id: str, intent_id: str) -> dict[str, Any]:
    row = (await ctx.conn.execute(LOCK_PURCHASE, {"pi": intent_id})).mappings().first()
    if row is None or row["user_id"] != user_id:
        raise NotFound("no purchase for this PaymentIntent", paymentIntentId=intent_id)
    return dict(row)


def _payment(purchase: dict[str, Any], **extra: Any) -> PaymentPayload:
    return PaymentPayload(
        purchase_id=purchase["id"],
        pack_id=purchase["pack_id"],
        payment_intent_id=purchase["payment_intent_id"],
        amount=purchase["amount_minor"],
        currency=purchase["currency"].strip(),
        credits=purchase["credits"],
        bonus_credits=purchase["bonus_credits"],
        **extra,
    )


async def confirm_purchase(ctx: LedgerContext, command: ConfirmPurchase) -> Outcome:
    """Grant a paid purchase: PURCHASED batch (+ PROMOTIONAL bonus), CREDIT_PURCHASE."""
    payload = command.payload
    purchase = await _purchase(ctx, command.user_id, payload.payment_intent_id)
    if purchase["status"] == "succeeded":
        return Outcome(command, APPLIED, {"purchaseId": str(purchase["id"]), "already": True})
    currency = purchase["currency"].strip()
    if payload.amount_received != purchase["amount_minor"] or payload.currency != currency:
        raise PaymentFailedError(
            "the amount received does not match the purchase",
            expected={"amount": purchase["amount_minor"], "currency": currency},
            received={"amount": payload.amount_received, "currency": payload.currency},
        )
    metadata = {"packId": purchase["pack_id"], "purchaseId": str(purchase["id"])}
    granted = await grant_batch(
        ctx,
        command,
        credits=purchase["credits"],
        source=PURCHASED,
        transaction_type="CREDIT_PURCHASE",
        system_code="purchases",
        reason=f"credit pack {purchase['pack_id']}",
        metadata=metadata,
        amount_minor=purchase["amount_minor"],
        currency=currency,
        stripe_payment_intent_id=purchase["payment_intent_id"],
        paid=True,
    )
    events = list(granted.events)
    balance = granted.result["balance"]
    bonus_id = None
    if purchase["bonus_credits"]:
        bonus = await grant_batch(
            ctx,
            command,
            credits=purchase["bonus_credits"],
            source=PROMOTIONAL,
            transaction_type="PROMO_BONUS",
            system_code="promotions",
            reason=f"bonus of credit pack {purchase['pack_id']}",
            metadata=metadata,
            paid=True,
        )
        events += bonus.events
        balance = bonus.result["balance"]
        bonus_id = bonus.result["transactionId"]
    await ctx.conn.execute(
        MARK,
        {"status": "succeeded", "tx": granted.result["transactionId"], "code": None, "id": purchase["id"]},
    )
    envelope: dict[str, Any] = {
        "user_id": command.user_id,
        "correlation_id": command.correlation_id,
        "command_id": command.id,
    }
    events += [
        PaymentSucceeded(**envelope, payload=_payment(purchase)),
        ReceiptRequested(
            **envelope,
            payload=ReceiptPayload(
                purchase_id=purchase["id"],
                pack_id=purchase["pack_id"],
                pack_name=purchase["pack_name"],
                credits=purchase["credits"],
                bonus_credits=purchase["bonus_credits"],
                amount=purchase["amount_minor"],
                currency=currency,
                email=purchase["email"],
                balance_after=balance["available"],
            ),
        ),
    ]
    return Outcome(
        command,
        APPLIED,
        {
            "purchaseId": str(purchase["id"]),
            "transactionId": granted.result["transactionId"],
            "bonusTransactionId": bonus_id,
            "credits": purchase["credits"],
            "bonusCredits": purchase["bonus_credits"],
            "balance": balance,
        },
        events,
    )


async def fail_purchase(ctx: LedgerContext, command: FailPurchase) -> Outcome:
    """A declined payment: the purchase is failed (unless it already succeeded)."""
    payload = command.payload
    purchase = await _purchase(ctx, command.user_id, payload.payment_intent_id)
    if purchase["status"] != "pending":
        return Outcome(command, APPLIED, {"purchaseId": str(purchase["id"]), "already": True})
    await ctx.conn.execute(
        MARK, {"status": "failed", "tx": None, "code": payload.failure_code, "id": purchase["id"]}
    )
    event = PaymentFailed(
        user_id=command.user_id,
        correlation_id=command.correlation_id,
        command_id=command.id,
        payload=_payment(purchase, code="PAY002", failure_code=payload.failure_code),
    )
    return Outcome(
        command,
        APPLIED,
        {"purchaseId": str(purchase["id"]), "status": "failed", "code": "PAY002"},
        [event],
    )


HANDLERS: dict[str, Handler] = {"purchase.confirm": confirm_purchase, "purchase.fail": fail_purchase}
