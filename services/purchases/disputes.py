"""Disputes (chargebacks): freeze a purchase's credits until the bank decides.

Opening a dispute records it (`purchase_disputes`) and freezes what is left of the
purchase's own batches (a freeze whose reference is `dispute:<id>`), so the credits can
be neither spent nor moved. Credits of the purchase that come back later while the
dispute is open (a booking's hold released, a charge refunded) join the freeze
(`claims`). Lost: the bank returned the money, so every freeze of the dispute is taken
back (PURCHASE_REVERSAL from the held bucket) and the purchase owes all it granted;
what was spent stays owed and is paid by any credits that come back later. Won or
`warning_closed` (an inquiry closed without a chargeback): the freezes are released.
"""

from typing import Any

from schemas.commands import FreezePurchase, SettleDispute
from schemas.events import EventEnvelope
from services.errors import ValidationFailed
from services.fraud.flags import raise_flag
from services.fraud.rules import Verdict
from services.ledger import batch_store, hold_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.handlers import APPLIED
from services.ledger.handlers.common import lock_one
from services.ledger.handlers.freeze import freeze_batches, settle_freeze
from services.ledger.models import Account
from services.purchases import store
from services.purchases.claims import DISPUTE_HOLD_DAYS, dispute_reference
from services.purchases.handlers import GRANTED_BY, granted_credits, purchase_of

LOST = "lost"
CLOSED = ("won", LOST, "warning_closed")


async def freeze_purchase(ctx: LedgerContext, command: FreezePurchase) -> Outcome:
    payload = command.payload
    purchase = await purchase_of(ctx, command.user_id, payload.payment_intent_id)
    account = await _account(ctx, command)
    if not await store.open_dispute(ctx.conn, payload.dispute_id, purchase["id"], command.user_id):
        return Outcome(command, APPLIED, {"disputeId": payload.dispute_id, "already": True})
    result, events = await _freeze(ctx, command, purchase, account, payload.dispute_id)
    if not events:  # nothing frozen and the user's dispute flag is open already
        result["quiet"] = True  # nothing to announce: reconcile expects no event
    return Outcome(command, APPLIED, result, events)


async def _account(ctx: LedgerContext, command: FreezePurchase | SettleDispute) -> Account:
    """The user's account, locked (created if a dispute reaches us before any credit)."""
    account = await lock_one(ctx, command.user_id, create=True)
    assert account is not None
    return account


async def _freeze(
    ctx: LedgerContext, command: FreezePurchase | SettleDispute, purchase: dict[str, Any],
    account: Account, dispute_id: str,
) -> tuple[dict[str, Any], list[EventEnvelope]]:
    """Freeze what is left of the purchase's batches for a dispute just recorded."""
    batches = await batch_store.lock_purchase_batches(
        ctx.conn, purchase["id"], [purchase[k] for k in GRANTED_BY if purchase[k]]
    )
    hold, events = await freeze_batches(
        ctx, command, account, batches, reference=dispute_reference(dispute_id),
        days=DISPUTE_HOLD_DAYS,
        metadata={"purchaseId": str(purchase["id"]), "disputeId": dispute_id},
    )
    frozen = hold.credits if hold else 0
    if frozen:
        await store.add_frozen(ctx.conn, dispute_id, frozen)
    # The dispute's own freeze is the freeze: the flag records it for review, no second one.
    events += await raise_flag(
        ctx, command, Verdict("dispute_opened", "high", {"disputeId": dispute_id}),
        purchase_id=purchase["id"], payment_intent_id=purchase["payment_intent_id"],
        shortfall=granted_credits(purchase) - frozen,
        freeze=False,
        frozen=frozen, hold_id=hold.id if hold else None,
    )
    result: dict[str, Any] = {"disputeId": dispute_id, "frozen": frozen}
    if hold:
        result["holdId"] = str(hold.id)
    return result, events


async def settle_dispute(ctx: LedgerContext, command: SettleDispute) -> Outcome:
    payload = command.payload
    purchase = await purchase_of(ctx, command.user_id, payload.payment_intent_id)
    account = await _account(ctx, command)
    if payload.outcome not in CLOSED:
        raise ValidationFailed(f"a dispute closes as one of {', '.join(CLOSED)}",
                               outcome=payload.outcome)
    events: list[EventEnvelope] = []
    if await store.open_dispute(ctx.conn, payload.dispute_id, purchase["id"], command.user_id):
        # Closed before its "created" event reached us (Stripe does not order events):
        # opened and frozen now, settled below; the late "created" then finds it known.
        _, events = await _freeze(ctx, command, purchase, account, payload.dispute_id)
    dispute = await store.lock_dispute(ctx.conn, payload.dispute_id)
    if dispute is None or dispute["status"] != "open" or dispute["purchase_id"] != purchase["id"]:
        return Outcome(command, APPLIED, {"disputeId": payload.dispute_id, "already": True})
    lost = payload.outcome == LOST
    # Closed first: credits released below must not rejoin this dispute's freeze.
    await store.close_dispute(ctx.conn, payload.dispute_id, payload.outcome)
    freezes = await hold_store.open_freezes(ctx.conn, command.user_id,
                                      dispute_reference(payload.dispute_id))
    taken = 0
    for hold in freezes:
        events += await settle_freeze(
            ctx, command, account, hold, take_back=lost, draft_type="PURCHASE_REVERSAL",
            system_code="purchases", reason=f"dispute {payload.outcome}",
            metadata={"purchaseId": str(purchase["id"]), "disputeId": payload.dispute_id},
            stripe_payment_intent_id=purchase["payment_intent_id"],
        )
        taken += hold.credits if lost else 0
    result: dict[str, Any] = {"disputeId": payload.dispute_id, "outcome": payload.outcome,
                              "credits": sum(h.credits for h in freezes)}
    if lost:
        # The bank took all the money back: all the purchase granted is owed.
        result["owed"] = await store.owe(ctx.conn, purchase["id"], owed=granted_credits(purchase),
                                         clawed=taken)
    if not events:  # the dispute froze nothing: no credits move
        result["quiet"] = True  # nothing to announce: reconcile expects no event
    return Outcome(command, APPLIED, result, events)
