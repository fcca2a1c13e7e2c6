"""Disputes (chargebacks): freeze a purchase's unspent credits until the bank decides.

Opening a dispute holds what is left of the purchase's own batches (a CREDIT_HOLD
whose reference is `dispute:<id>`), so the credits can be neither spent nor moved.
Won: the hold is released to those batches. Lost: the bank returned the money, so
the held credits are taken back (PURCHASE_REVERSAL from the held bucket).
"""

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import text

from schemas.commands import FreezePurchase, SettleDispute
from schemas.events import FraudFlagged, FraudFlagPayload
from services.ledger import repository as repo
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.handlers import APPLIED, release_hold
from services.ledger.models import AVAILABLE, HELD, Allocation, Hold, Leg, TransactionDraft
from services.purchases.handlers import debit_purchase_batches, purchase_of

DISPUTE_HOLD_DAYS = 180  # longer than any card network's dispute window
ADD_CLAWED = text(
    "UPDATE purchases SET clawed_credits = clawed_credits + :n, updated_at = now() WHERE id = :id"
)


def _reference(dispute_id: str) -> str:
    return f"dispute:{dispute_id}"


def _envelope(command: Any) -> dict[str, Any]:
    return {"user_id": command.user_id, "correlation_id": command.correlation_id,
            "command_id": command.id}


async def freeze_purchase(ctx: LedgerContext, command: FreezePurchase) -> Outcome:
    payload = command.payload
    purchase = await purchase_of(ctx, command.user_id, payload.payment_intent_id)
    account = (await repo.lock_accounts(ctx.conn, [command.user_id]))[command.user_id]
    reference = _reference(payload.dispute_id)
    if await repo.open_hold_exists(ctx.conn, command.user_id, reference):
        return Outcome(command, APPLIED, {"disputeId": payload.dispute_id, "already": True})
    sources = [t for t in (purchase["bonus_transaction_id"], purchase["grant_transaction_id"]) if t]
    batches = await repo.lock_batches_of(ctx.conn, sources)
    credits = min(sum(b.remaining for b in batches), account.available)
    flag = FraudFlagged(
        **_envelope(command),
        payload=FraudFlagPayload(
            reason="dispute_opened",
            severity="high",
            purchase_id=purchase["id"],
            payment_intent_id=purchase["payment_intent_id"],
            shortfall_credits=purchase["credits"] + purchase["bonus_credits"] - credits,
        ),
    )
    if credits == 0:
        return Outcome(command, APPLIED, {"disputeId": payload.dispute_id, "frozen": 0}, [flag])
    draft = TransactionDraft(
        type="CREDIT_HOLD",
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference=reference,
        metadata={"purchaseId": str(purchase["id"]), "disputeId": payload.dispute_id},
        legs=[Leg(account.id, AVAILABLE, -credits), Leg(account.id, HELD, credits)],
    )
    hold = Hold(
        id=uuid.uuid4(),
        account_id=account.id,
        user_id=command.user_id,
        reference=reference,
        credits=credits,
        status="open",
        expires_at=ctx.now + timedelta(days=DISPUTE_HOLD_DAYS),
        transaction_id=draft.id,
    )
    draft.hold_id = hold.id
    await repo.insert_transactions(ctx.conn, [draft])
    taken = await debit_purchase_batches(ctx, draft.id, batches, credits)
    after = await repo.adjust_accounts(ctx.conn, {account.id: (-credits, credits)})
    await repo.insert_postings(ctx.conn, [draft], after)
    await repo.insert_hold(ctx.conn, hold)
    events = announce(
        "credits.held", command, command.user_id, draft,
        after=after[account.id], delta=-credits, held_delta=credits, allocations=taken,
    )
    return Outcome(
        command,
        APPLIED,
        {"disputeId": payload.dispute_id, "holdId": str(hold.id), "frozen": credits},
        [*events, flag],
    )


async def settle_dispute(ctx: LedgerContext, command: SettleDispute) -> Outcome:
    payload = command.payload
    purchase = await purchase_of(ctx, command.user_id, payload.payment_intent_id)
    account = (await repo.lock_accounts(ctx.conn, [command.user_id]))[command.user_id]
    hold = await repo.find_hold(ctx.conn, command.user_id, None, _reference(payload.dispute_id))
    if hold is None or hold.status != "open":
        return Outcome(command, APPLIED, {"disputeId": payload.dispute_id, "already": True})
    allocations: list[Allocation] = []
    if payload.outcome == "lost":
        draft = TransactionDraft(
            type="PURCHASE_REVERSAL",
            user_id=command.user_id,
            credits=hold.credits,
            command_id=command.id,
            reference=hold.reference,
            stripe_payment_intent_id=purchase["payment_intent_id"],
            related_transaction_id=hold.transaction_id,
            hold_id=hold.id,
            metadata={"purchaseId": str(purchase["id"]), "disputeId": payload.dispute_id},
            legs=[Leg(account.id, HELD, -hold.credits),
                  Leg(ctx.system("purchases"), AVAILABLE, hold.credits)],
        )
        await repo.insert_transactions(ctx.conn, [draft])
        await ctx.conn.execute(ADD_CLAWED, {"n": hold.credits, "id": purchase["id"]})
        deltas, kind, status = (0, -hold.credits), "credits.revoked", "captured"
    else:
        draft, allocations = await release_hold(
            ctx, command, account, hold, hold.credits, "dispute won"
        )
        deltas, kind, status = (hold.credits, -hold.credits), "credits.released", "released"
    after = await repo.adjust_accounts(ctx.conn, {account.id: deltas})
    await repo.insert_postings(ctx.conn, [draft], after)
    await repo.settle_hold(ctx.conn, hold.id, status, draft.id)
    events = announce(
        kind, command, command.user_id, draft,
        after=after[account.id], delta=deltas[0], held_delta=deltas[1], allocations=allocations,
    )
    return Outcome(
        command,
        APPLIED,
        {"disputeId": payload.dispute_id, "outcome": payload.outcome, "credits": hold.credits},
        events,
    )
