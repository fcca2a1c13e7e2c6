"""Freezing credits until someone decides: disputes (the bank) and fraud flags (an admin).

A freeze is a hold of its own kind (CREDIT_HOLD, kind `freeze`, reference
`dispute:<id>` or `fraud:<id>`) over named batches, so frozen credits can be neither
spent nor moved and every change shows in the history. `credits.capture` and
`credits.release` refuse freezes, and booking holds may not take their references.
Settling either releases them to their batches or takes them back from the held
bucket to a system account.
"""

import uuid
from datetime import timedelta
from typing import Any

from schemas.commands import CommandEnvelope
from schemas.events import EventEnvelope
from services.ledger import account_store, batch_store, hold_store, journal_store
from services.ledger.context import LedgerContext
from services.ledger.events import announce
from services.ledger.handlers.common import take_in_order
from services.ledger.handlers.holds import release_hold
from services.ledger.handlers.returns import claim_returns
from services.ledger.models import (
    AVAILABLE,
    FREEZE,
    HELD,
    Account,
    Allocation,
    Hold,
    Leg,
    TransactionDraft,
)


async def freeze_batches(
    ctx: LedgerContext,
    command: CommandEnvelope,
    account: Account,
    batches: list[batch_store.OpenBatch],
    *,
    reference: str,
    days: int,
    metadata: dict[str, Any],
) -> tuple[Hold | None, list[EventEnvelope]]:
    """Hold what is left of `batches` (in their order), at most the available balance."""
    credits = min(sum(b.remaining for b in batches), account.available)
    if credits <= 0:
        return None, []
    draft = TransactionDraft(
        type="CREDIT_HOLD",
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference=reference,
        metadata=metadata,
        legs=[Leg(account.id, AVAILABLE, -credits), Leg(account.id, HELD, credits)],
    )
    hold = Hold(
        id=uuid.uuid4(),
        account_id=account.id,
        user_id=command.user_id,
        reference=reference,
        credits=credits,
        status="open",
        expires_at=ctx.now + timedelta(days=days),
        transaction_id=draft.id,
        kind=FREEZE,
    )
    draft.hold_id = hold.id
    await journal_store.insert_transactions(ctx.conn, [draft])
    taken = take_in_order(draft.id, batches, credits)
    await batch_store.debit_batches(ctx.conn, taken)
    after = await account_store.adjust_accounts(ctx.conn, {account.id: (-credits, credits)})
    await journal_store.insert_postings(ctx.conn, [draft], after)
    await hold_store.insert_hold(ctx.conn, hold)
    account.available, account.held = after[account.id]
    events = announce(
        "credits.held", command, command.user_id, draft,
        after=after[account.id], delta=-credits, held_delta=credits, allocations=taken,
    )
    return hold, events


async def settle_freeze(
    ctx: LedgerContext,
    command: CommandEnvelope,
    account: Account,
    hold: Hold,
    *,
    take_back: bool,
    draft_type: str,
    system_code: str,
    reason: str,
    metadata: dict[str, Any],
    stripe_payment_intent_id: str | None = None,
) -> list[EventEnvelope]:
    """Release the frozen credits to their batches, or take them back (`take_back`)."""
    allocations: list[Allocation] = []
    if take_back:
        draft = TransactionDraft(
            type=draft_type,
            user_id=command.user_id,
            credits=hold.credits,
            command_id=command.id,
            reference=hold.reference,
            stripe_payment_intent_id=stripe_payment_intent_id,
            related_transaction_id=hold.transaction_id,
            hold_id=hold.id,
            metadata=metadata,
            legs=[Leg(account.id, HELD, -hold.credits),
                  Leg(ctx.system(system_code), AVAILABLE, hold.credits)],
        )
        await journal_store.insert_transactions(ctx.conn, [draft])
        deltas, kind, status = (0, -hold.credits), "credits.revoked", "captured"
    else:
        draft, allocations = await release_hold(ctx, command, account, hold, hold.credits, reason)
        deltas, kind, status = (hold.credits, -hold.credits), "credits.released", "released"
    after = await account_store.adjust_accounts(ctx.conn, {account.id: deltas})
    await journal_store.insert_postings(ctx.conn, [draft], after)
    await hold_store.settle_hold(ctx.conn, hold.id, status, draft.id)
    account.available, account.held = after[account.id]
    events = announce(
        kind, command, command.user_id, draft,
        after=after[account.id], delta=deltas[0], held_delta=deltas[1], allocations=allocations,
    )
    # Released credits may be owed to, or frozen by, a purchase (a refund or a dispute
    # that arrived while they were frozen here).
    return events + await claim_returns(ctx, command, account, allocations)
