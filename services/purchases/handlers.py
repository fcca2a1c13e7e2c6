"""Ledger-worker handlers of verified Stripe payments.

A PaymentIntent grants at most once, however many events mention it: the purchase
row is locked and its status checked, and the database refuses a second
CREDIT_PURCHASE for the same intent (unique index).
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

from schemas.commands import ConfirmPurchase, FailPurchase, RevokePurchase
from schemas.events import (
    PaymentFailed,
    PaymentPayload,
    PaymentRefunded,
    PaymentSucceeded,
    ReceiptPayload,
    ReceiptRequested,
)
from services.errors import NotFound, PaymentNotAccepted
from services.fraud.checks import after_failed_payment, after_paid_purchase, after_promo_redeemed
from services.fraud.flags import raise_flag
from services.fraud.rules import Verdict
from services.ledger import account_store, batch_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import envelope_of
from services.ledger.handlers import APPLIED, Handler, grant_batch
from services.ledger.handlers.returns import claim_returns
from services.ledger.models import PROMOTIONAL, PURCHASED, Allocation
from services.promos import reservations
from services.purchases.claims import take_back
from services.purchases.purchase_store import (
    LOCK_PURCHASE,
    MARK_PAYMENT_OUTCOME,
    MARK_PROMO_BONUS,
    MARK_REFUNDED,
    RECORD_REFUND,
)
from services.purchases.store import Claim, owe

# The transactions that granted a purchase's batches, in the order a refund takes them
# back: gifts first (a promo code's bonus, then the pack's), then the bought credits.
GRANTED_BY = ("promo_bonus_transaction_id", "bonus_transaction_id", "grant_transaction_id")


def granted_credits(purchase: dict[str, Any]) -> int:
    """All the credits a purchase granted: the pack's, its bonus and a promo bonus."""
    return int(purchase["credits"] + purchase["bonus_credits"] + purchase["promo_bonus_credits"])


async def purchase_of(
    ctx: LedgerContext, user_id: str, intent_id: str, purchase_id: Any = None
) -> dict[str, Any]:
    """The user's purchase, by its id when the event names it, else by PaymentIntent."""
    params = {"pi": intent_id, "purchase": purchase_id}
    row = (await ctx.conn.execute(LOCK_PURCHASE, params)).mappings().first()
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


def _allocation(granted: Outcome, source: str, purchase_id: Any) -> Allocation:
    """The batch a grant created, as credits that just arrived for the purchase."""
    result = granted.result
    return Allocation(
        uuid.UUID(result["transactionId"]), uuid.UUID(result["batchId"]), result["credits"],
        datetime.fromisoformat(result["expiresAt"]), source, purchase_id=purchase_id,
    )


def receipt_of(
    purchase: dict[str, Any], balance_after: int, envelope: dict[str, Any]
) -> ReceiptRequested:
    """The receipt of a paid purchase (a locked `LOCK_PURCHASE` row): what the payment
    bought and the balance after; a new event (id) each time it is built."""
    return ReceiptRequested(
        **envelope,
        payload=ReceiptPayload(
            purchase_id=purchase["id"],
            pack_id=purchase["pack_id"],
            pack_name=purchase["pack_name"],
            credits=purchase["credits"],
            bonus_credits=purchase["bonus_credits"] + purchase["promo_bonus_credits"],
            amount=purchase["amount_minor"],
            currency=purchase["currency"].strip(),
            email=purchase["email"],
            balance_after=balance_after,
        ),
    )


async def confirm_purchase(ctx: LedgerContext, command: ConfirmPurchase) -> Outcome:
    """Grant a paid purchase: PURCHASED batch (+ PROMOTIONAL bonus), CREDIT_PURCHASE."""
    payload = command.payload
    purchase = await purchase_of(
        ctx, command.user_id, payload.payment_intent_id, payload.purchase_id
    )
    if purchase["payment_intent_id"] not in (None, payload.payment_intent_id):
        raise PaymentNotAccepted(
            "the event's PaymentIntent is not this purchase's",
            purchaseId=str(purchase["id"]),
        )
    purchase["payment_intent_id"] = payload.payment_intent_id
    if purchase["status"] in ("succeeded", "refunded"):  # a late event of a granted purchase
        return Outcome(command, APPLIED, {"purchaseId": str(purchase["id"]), "already": True})
    currency = purchase["currency"].strip()
    if payload.amount_received != purchase["amount_minor"] or payload.currency != currency:
        raise PaymentNotAccepted(
            "the amount received does not match the purchase",
            expected={"amount": purchase["amount_minor"], "currency": currency},
            received={"amount": payload.amount_received, "currency": payload.currency},
        )
    metadata: dict[str, Any] = {"packId": purchase["pack_id"], "purchaseId": str(purchase["id"])}
    if purchase["promo_code"]:
        metadata |= {"promoCode": purchase["promo_code"], "discount": purchase["discount_minor"],
                     "listPrice": purchase["list_amount_minor"]}
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
        purchase_id=purchase["id"],
    )
    events = list(granted.events)
    balance = granted.result["balance"]
    grants: list[tuple[Outcome, str]] = [(granted, PURCHASED)]
    promo_days = purchase["promo_bonus_expiry_days"] or ctx.settings.credit_expiry_days
    gifts = (  # the pack's own bonus, then a bonus_credits code's (with its own expiry)
        ("bonus", purchase["bonus_credits"], None, f"bonus of credit pack {purchase['pack_id']}"),
        ("promo", purchase["promo_bonus_credits"], ctx.now + timedelta(days=promo_days),
         f"promo code {purchase['promo_code']}"),
    )
    gift_ids: dict[str, Any] = {"bonus": None, "promo": None}
    for kind, credits, expires_at, reason in gifts:
        if not credits:
            continue
        gift = await grant_batch(
            ctx, command, credits=credits, source=PROMOTIONAL, transaction_type="PROMO_BONUS",
            system_code="promotions", expires_at=expires_at, reason=reason, metadata=metadata,
            paid=True, purchase_id=purchase["id"],
        )
        events += gift.events
        balance = gift.result["balance"]
        gift_ids[kind] = gift.result["transactionId"]
        grants.append((gift, PROMOTIONAL))
    bonus_id = gift_ids["bonus"]
    if gift_ids["promo"]:
        await ctx.conn.execute(MARK_PROMO_BONUS, {"tx": gift_ids["promo"], "id": purchase["id"]})
    # A refund or a dispute may have reached us before the payment did (Stripe does not
    # order its events): the new batches pay what the purchase owes, or freeze, at once.
    account = (await account_store.lock_accounts(ctx.conn, [command.user_id]))[command.user_id]
    fresh = [_allocation(g, source, purchase["id"]) for g, source in reversed(grants)]
    claimed = await claim_returns(ctx, command, account, fresh)
    if claimed:
        events += claimed
        balance = account.balance()
    await reservations.redeem(ctx.conn, purchase["reservation_id"])
    refunded_in_full = purchase["refunded_minor"] >= purchase["amount_minor"]
    await ctx.conn.execute(
        MARK_PAYMENT_OUTCOME,
        {
            "status": "refunded" if refunded_in_full else "succeeded",
            "tx": granted.result["transactionId"],
            "bonus_tx": bonus_id,
            "code": None,
            "pi": payload.payment_intent_id,
            "id": purchase["id"],
        },
    )
    envelope: dict[str, Any] = {
        "user_id": command.user_id,
        "correlation_id": command.correlation_id,
        "command_id": command.id,
    }
    events += [
        PaymentSucceeded(**envelope, payload=_payment(purchase)),
        receipt_of(purchase, balance["available"], envelope),
    ]
    events += await after_paid_purchase(ctx, command, purchase)
    if purchase["reservation_id"]:
        events += await after_promo_redeemed(ctx, command, purchase["reservation_id"])
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
    purchase = await purchase_of(ctx, command.user_id, payload.payment_intent_id)
    if purchase["status"] != "pending":
        return Outcome(command, APPLIED, {"purchaseId": str(purchase["id"]), "already": True})
    await ctx.conn.execute(
        MARK_PAYMENT_OUTCOME,
        {"status": "failed", "tx": None, "bonus_tx": None, "code": payload.failure_code,
         "pi": payload.payment_intent_id, "id": purchase["id"]},
    )
    await reservations.release(ctx.conn, purchase["reservation_id"], "payment_failed")
    event = PaymentFailed(
        user_id=command.user_id,
        correlation_id=command.correlation_id,
        command_id=command.id,
        payload=_payment(
            purchase, code=PaymentNotAccepted.code, failure_code=payload.failure_code
        ),
    )
    flags = await after_failed_payment(
        ctx, command, purchase_id=purchase["id"], payment_intent_id=payload.payment_intent_id
    )
    return Outcome(
        command,
        APPLIED,
        {"purchaseId": str(purchase["id"]), "status": "failed", "code": PaymentNotAccepted.code},
        [event, *flags],
    )


async def revoke_purchase(ctx: LedgerContext, command: RevokePurchase) -> Outcome:
    """Stripe refunded (part of) a purchase's money: take back its share of credits.

    The purchase owes credits in proportion to the money refunded (rounded down, in the
    customer's favour), counted once however the refunds are split. What it owes is
    taken from the purchase's own spendable batches; what was spent or is held cannot
    be taken now: it stays owed (`shortfall`), flagged for review, and is paid by the
    purchase's credits that come back later (`claims`). A balance never goes below zero.
    """
    payload = command.payload
    purchase = await purchase_of(ctx, command.user_id, payload.payment_intent_id)
    amount = purchase["amount_minor"]
    refunded = min(payload.amount_refunded, amount)
    if refunded <= purchase["refunded_minor"]:
        return Outcome(command, APPLIED, {"purchaseId": str(purchase["id"]), "already": True})
    owed = max(purchase["owed_credits"], granted_credits(purchase) * refunded // amount)
    if purchase["status"] in ("pending", "failed"):
        return await _refund_before_payment(ctx, command, purchase, refunded, owed)
    account = (await account_store.lock_accounts(ctx.conn, [command.user_id]))[command.user_id]
    batches = await batch_store.lock_purchase_batches(
        ctx.conn, purchase["id"], [purchase[k] for k in GRANTED_BY if purchase[k]]
    )
    to_take = owed - purchase["clawed_credits"]
    taken_total = max(0, min(to_take, sum(b.remaining for b in batches), account.available))
    currency = purchase["currency"].strip()
    events: list[Any] = []
    result: dict[str, Any] = {"purchaseId": str(purchase["id"]), "refunded": refunded,
                              "creditsRevoked": taken_total}
    if taken_total:
        draft, revoked = await take_back(
            ctx, command, account, Claim.of(purchase), batches, taken_total,
            money=(refunded - purchase["refunded_minor"], currency),
        )
        events += revoked
        result["transactionId"] = str(draft.id)
        result["balance"] = account.balance()
    shortfall = await owe(ctx.conn, purchase["id"], owed=owed, clawed=taken_total)
    result["shortfall"] = shortfall
    await ctx.conn.execute(RECORD_REFUND, {"purchase": purchase["id"], "currency": currency,
                                           "amount": refunded - purchase["refunded_minor"],
                                           "command": command.id})
    status = "refunded" if refunded >= amount else "succeeded"
    await ctx.conn.execute(MARK_REFUNDED, {"status": status, "refunded": refunded,
                                           "id": purchase["id"]})
    envelope: dict[str, Any] = {
        "user_id": command.user_id,
        "correlation_id": command.correlation_id,
        "command_id": command.id,
    }
    events.append(PaymentRefunded(**envelope, payload=_payment(purchase, refunded=refunded)))
    if shortfall > purchase["shortfall_credits"]:  # newly owed and out of reach: review it
        verdict = Verdict("refund_of_spent_credits", "medium",
                          {"shortfall": shortfall, "refunded": refunded}, subject=str(purchase["id"]))
        events += await raise_flag(
            ctx, command, verdict, purchase_id=purchase["id"],
            payment_intent_id=purchase["payment_intent_id"], shortfall=shortfall,
        )
    return Outcome(command, APPLIED, result, events)


async def _refund_before_payment(
    ctx: LedgerContext, command: RevokePurchase, purchase: dict[str, Any], refunded: int,
    owed: int,
) -> Outcome:
    """Stripe reported a refund before the payment's own event reached us: nothing to take
    yet, so the purchase remembers what it owes and its grant pays it (`claims`)."""
    currency = purchase["currency"].strip()
    shortfall = await owe(ctx.conn, purchase["id"], owed=owed, clawed=0)
    await ctx.conn.execute(RECORD_REFUND, {"purchase": purchase["id"], "currency": currency,
                                           "amount": refunded - purchase["refunded_minor"],
                                           "command": command.id})
    await ctx.conn.execute(MARK_REFUNDED, {"status": purchase["status"], "refunded": refunded,
                                           "id": purchase["id"]})
    event = PaymentRefunded(**envelope_of(command), payload=_payment(purchase, refunded=refunded))
    return Outcome(command, APPLIED, {"purchaseId": str(purchase["id"]), "refunded": refunded,
                                      "creditsRevoked": 0, "shortfall": shortfall,
                                      "beforePayment": True}, [event])


HANDLERS: dict[str, Handler] = {
    "purchase.confirm": confirm_purchase,
    "purchase.fail": fail_purchase,
    "purchase.revoke": revoke_purchase,
}
