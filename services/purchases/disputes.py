"""Disputes (chargebacks): freeze a purchase's unspent credits until the bank decides.

Opening a dispute holds what is left of the purchase's own batches (a CREDIT_HOLD
whose reference is `dispute:<id>`), so the credits can be neither spent nor moved.
Won: the hold is released to those batches. Lost: the bank returned the money, so
the held credits are taken back (PURCHASE_REVERSAL from the held bucket).
"""

from typing import Any

from sqlalchemy import text

from schemas.commands import FreezePurchase, SettleDispute
from services.fraud.flags import raise_flag
from services.fraud.rules import Verdict
from services.ledger import repository as repo
from services.ledger.context import LedgerContext, Outcome
from services.ledger.handlers import APPLIED
from services.ledger.handlers.freeze import freeze_batches, settle_freeze
from services.purchases.handlers import purchase_of

DISPUTE_HOLD_DAYS = 180  # longer than any card network's dispute window
ADD_CLAWED = text(
    "UPDATE purchases SET clawed_credits = clawed_credits + :n, updated_at = now() WHERE id = :id"
)


def _reference(dispute_id: str) -> str:
    return f"dispute:{dispute_id}"


async def freeze_purchase(ctx: LedgerContext, command: FreezePurchase) -> Outcome:
    payload = command.payload
    purchase = await purchase_of(ctx, command.user_id, payload.payment_intent_id)
    account = (await repo.lock_accounts(ctx.conn, [command.user_id]))[command.user_id]
    reference = _reference(payload.dispute_id)
    if await repo.open_hold_exists(ctx.conn, command.user_id, reference):
        return Outcome(command, APPLIED, {"disputeId": payload.dispute_id, "already": True})
    granted_by = ("promo_bonus_transaction_id", "bonus_transaction_id", "grant_transaction_id")
    sources = [purchase[k] for k in granted_by if purchase[k]]
    batches = await repo.lock_batches_of(ctx.conn, sources)
    hold, events = await freeze_batches(
        ctx, command, account, batches, reference=reference, days=DISPUTE_HOLD_DAYS,
        metadata={"purchaseId": str(purchase["id"]), "disputeId": payload.dispute_id},
    )
    frozen = hold.credits if hold else 0
    # The dispute's own hold is the freeze: the flag records it for review, no second hold.
    events += await raise_flag(
        ctx, command, Verdict("dispute_opened", "high", {"disputeId": payload.dispute_id}),
        purchase_id=purchase["id"], payment_intent_id=purchase["payment_intent_id"],
        shortfall=purchase["credits"] + purchase["bonus_credits"] + purchase["promo_bonus_credits"]
        - frozen,
        freeze=False,
        frozen=frozen, hold_id=hold.id if hold else None,
    )
    result: dict[str, Any] = {"disputeId": payload.dispute_id, "frozen": frozen}
    if hold:
        result["holdId"] = str(hold.id)
    return Outcome(command, APPLIED, result, events)


async def settle_dispute(ctx: LedgerContext, command: SettleDispute) -> Outcome:
    payload = command.payload
    purchase = await purchase_of(ctx, command.user_id, payload.payment_intent_id)
    account = (await repo.lock_accounts(ctx.conn, [command.user_id]))[command.user_id]
    hold = await repo.find_hold(ctx.conn, command.user_id, None, _reference(payload.dispute_id))
    if hold is None or hold.status != "open":
        return Outcome(command, APPLIED, {"disputeId": payload.dispute_id, "already": True})
    lost = payload.outcome == "lost"
    if lost:
        await ctx.conn.execute(ADD_CLAWED, {"n": hold.credits, "id": purchase["id"]})
    events = await settle_freeze(
        ctx, command, account, hold, take_back=lost, draft_type="PURCHASE_REVERSAL",
        system_code="purchases", reason="dispute won",
        metadata={"purchaseId": str(purchase["id"]), "disputeId": payload.dispute_id},
        stripe_payment_intent_id=purchase["payment_intent_id"],
    )
    return Outcome(
        command,
        APPLIED,
        {"disputeId": payload.dispute_id, "outcome": payload.outcome, "credits": hold.credits},
        events,
    )
