"""Holds: reserve credits (hold), then charge them (capture) or give them back (release)."""

import uuid
from datetime import timedelta

from schemas.commands import CaptureCredits, CommandEnvelope, HoldCredits, ReleaseCredits
from services.errors import Forbidden, InvalidState, NotFound, ValidationFailed
from services.ledger import batch_store, hold_store, journal_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.handlers.common import (
    applied,
    balance,
    check_amount,
    check_daily,
    check_funds,
    lock_one,
    write,
)
from services.ledger.handlers.returns import claim_returns, return_to_batches
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


async def hold_credits(ctx: LedgerContext, command: HoldCredits) -> Outcome:
    """Move credits from available to held, remembering the batches they came from."""
    payload = command.payload
    check_amount(ctx, payload.credits)
    account = check_funds(await lock_one(ctx, command.user_id), payload.credits)
    await check_daily(ctx, command.user_id)  # a booking is decided at its hold
    if await hold_store.open_hold_exists(ctx.conn, command.user_id, payload.reference):
        raise InvalidState(
            f"an open hold for {payload.reference!r} exists already", reference=payload.reference
        )
    ttl = payload.ttl_seconds or ctx.settings.hold_ttl_seconds
    draft = TransactionDraft(
        type="CREDIT_HOLD",
        user_id=command.user_id,
        credits=payload.credits,
        command_id=command.id,
        reference=payload.reference,
        metadata=payload.metadata,
        legs=[Leg(account.id, AVAILABLE, -payload.credits), Leg(account.id, HELD, payload.credits)],
    )
    hold = Hold(
        id=uuid.uuid4(),
        account_id=account.id,
        user_id=command.user_id,
        reference=payload.reference,
        credits=payload.credits,
        status="open",
        expires_at=ctx.now + timedelta(seconds=ttl),
        transaction_id=draft.id,
    )
    draft.hold_id = hold.id
    await journal_store.insert_transactions(ctx.conn, [draft])
    taken = await batch_store.take_from_batches(ctx.conn, [(draft.id, account.id, payload.credits)])
    after = await write(ctx, [draft], {account.id: (-payload.credits, payload.credits)})
    await hold_store.insert_hold(ctx.conn, hold)
    return applied(
        command,
        {
            "transactionId": str(draft.id),
            "holdId": str(hold.id),
            "credits": payload.credits,
            "reference": payload.reference,
            "expiresAt": hold.expires_at.isoformat(),
            "balance": balance(after[account.id]),
        },
        announce(
            "credits.held",
            command,
            command.user_id,
            draft,
            after=after[account.id],
            delta=-payload.credits,
            held_delta=payload.credits,
            allocations=taken,
        ),
    )


async def _open_hold(
    ctx: LedgerContext, command: CaptureCredits | ReleaseCredits, settled_ok: bool = False
) -> Hold:
    payload = command.payload
    if payload.hold_id is None and payload.reference is None:
        raise ValidationFailed("name the hold by holdId or reference")
    hold = await hold_store.find_hold(ctx.conn, command.user_id, payload.hold_id, payload.reference)
    if hold is None:
        raise NotFound("no such hold", holdId=payload.hold_id, reference=payload.reference)
    if hold.kind == FREEZE:
        # A dispute's or a fraud flag's freeze: only the bank's decision or an admin's
        # review settles it, never a service's capture or release.
        raise Forbidden("this hold is a freeze; its dispute or fraud review settles it",
                        holdId=str(hold.id))
    if hold.status != "open" and not settled_ok:
        raise InvalidState(f"the hold is {hold.status}", holdId=str(hold.id), status=hold.status)
    return hold


async def release_hold(
    ctx: LedgerContext,
    command: CommandEnvelope,
    account: Account,
    hold: Hold,
    credits: int,
    reason: str | None,
) -> tuple[TransactionDraft, list[Allocation]]:
    draft = TransactionDraft(
        type="CREDIT_RELEASE",
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference=hold.reference,
        related_transaction_id=hold.transaction_id,
        hold_id=hold.id,
        metadata={"reason": reason} if reason else {},
        legs=[Leg(account.id, HELD, -credits), Leg(account.id, AVAILABLE, credits)],
    )
    await journal_store.insert_transactions(ctx.conn, [draft])
    returned = await return_to_batches(
        ctx,
        account,
        return_transaction_id=draft.id,
        debit_transaction_id=hold.transaction_id,
        credits=credits,
    )
    return draft, returned


async def capture_credits(ctx: LedgerContext, command: CaptureCredits) -> Outcome:
    """Charge a hold (all, or part and release the rest) as CREDIT_USAGE."""
    account = await lock_one(ctx, command.user_id)
    if account is None:
        raise NotFound("no such hold", holdId=command.payload.hold_id)
    hold = await _open_hold(ctx, command)
    if hold.expires_at <= ctx.now:
        raise InvalidState("the hold has expired", holdId=str(hold.id))
    credits = command.payload.credits or hold.credits
    if credits > hold.credits:
        raise ValidationFailed(
            f"capture of {credits} exceeds the hold of {hold.credits}",
            held=hold.credits,
            requested=credits,
        )
    usage = TransactionDraft(
        type="CREDIT_USAGE",
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference=hold.reference,
        related_transaction_id=hold.transaction_id,
        hold_id=hold.id,
        metadata=command.payload.metadata,
        legs=[Leg(account.id, HELD, -credits), Leg(ctx.system("bookings"), AVAILABLE, credits)],
    )
    await journal_store.insert_transactions(ctx.conn, [usage])
    drafts = [usage]
    rest = hold.credits - credits
    returned: list[Allocation] = []
    if rest:
        release, returned = await release_hold(ctx, command, account, hold, rest, "partial capture")
        drafts.append(release)
    after = await write(ctx, drafts, {account.id: (rest, -hold.credits)})
    await hold_store.settle_hold(ctx.conn, hold.id, "captured", usage.id)
    account.available, account.held = after[account.id]
    events = announce(
        "credits.charged",
        command,
        command.user_id,
        usage,
        after=after[account.id],
        delta=rest,
        held_delta=-hold.credits,
    )
    events += await claim_returns(ctx, command, account, returned)
    return applied(
        command,
        {
            "transactionId": str(usage.id),
            "holdId": str(hold.id),
            "credits": credits,
            "released": rest,
            "balance": account.balance(),
        },
        events,
    )


async def release_credits(ctx: LedgerContext, command: ReleaseCredits) -> Outcome:
    """Cancel a hold: its credits return to their batches (expired ones: REFUNDED)."""
    account = await lock_one(ctx, command.user_id)
    if account is None:
        raise NotFound("no such hold", holdId=command.payload.hold_id)
    reason = command.payload.reason
    # The expiry job's release of a hold settled meanwhile is no error: the job's run
    # raced the booking service, nothing is left to do.
    hold = await _open_hold(ctx, command, settled_ok=reason == "expired")
    if hold.status != "open":
        return applied(command, {"holdId": str(hold.id), "status": hold.status, "credits": 0,
                                 "already": True}, [])
    draft, returned = await release_hold(ctx, command, account, hold, hold.credits, reason)
    after = await write(ctx, [draft], {account.id: (hold.credits, -hold.credits)})
    status = "expired" if reason == "expired" and hold.expires_at <= ctx.now else "released"
    await hold_store.settle_hold(ctx.conn, hold.id, status, draft.id)
    account.available, account.held = after[account.id]
    events = announce(
        "credits.released",
        command,
        command.user_id,
        draft,
        after=after[account.id],
        delta=hold.credits,
        held_delta=-hold.credits,
        allocations=returned,
    )
    events += await claim_returns(ctx, command, account, returned)
    return applied(
        command,
        {
            "transactionId": str(draft.id),
            "holdId": str(hold.id),
            "credits": hold.credits,
            "status": status,
            "balance": account.balance(),
        },
        events,
    )
