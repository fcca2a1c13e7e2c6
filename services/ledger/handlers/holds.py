"""Holds: reserve credits (hold), then charge them (capture) or give them back (release)."""

import uuid
from datetime import timedelta

from schemas.commands import CaptureCredits, CommandEnvelope, HoldCredits, ReleaseCredits
from services.errors import Forbidden, InvalidState, NotFound, PaymentError, ValidationFailed
from services.ledger import hold_store, journal_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.handlers.common import (
    applied,
    balance,
    lock_debtors,
    lock_one,
    spend,
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


async def hold_credits_many(
    ctx: LedgerContext, commands: list[HoldCredits]
) -> dict[uuid.UUID, Outcome | PaymentError]:
    """Holds of distinct users with a fixed number of statements: move credits from
    available to held, remembering the batches they came from.

    Refusals (limits, funds, an open hold for the same booking) are decided up front
    from the locked balances, so one refused hold costs nothing to the others.
    """
    debtors = await lock_debtors(ctx, [c.user_id for c in commands])
    open_already = await hold_store.open_holds_among(
        ctx.conn, [(c.user_id, c.payload.reference) for c in commands]
    )
    outcomes: dict[uuid.UUID, Outcome | PaymentError] = {}
    accepted: list[tuple[HoldCredits, Account, TransactionDraft, Hold]] = []
    for command in commands:
        payload = command.payload
        try:
            # A booking is decided at its hold: the daily limit counts here.
            account = await debtors.check(ctx, command.user_id, payload.credits)
            if (command.user_id, payload.reference) in open_already:
                raise InvalidState(
                    f"an open hold for {payload.reference!r} exists already", reference=payload.reference
                )
        except PaymentError as error:
            outcomes[command.id] = error
            continue
        draft = TransactionDraft(
            type="CREDIT_HOLD",
            user_id=command.user_id,
            credits=payload.credits,
            command_id=command.id,
            reference=payload.reference,
            metadata=payload.metadata,
            legs=[Leg(account.id, AVAILABLE, -payload.credits), Leg(account.id, HELD, payload.credits)],
        )
        ttl = payload.ttl_seconds or ctx.settings.hold_ttl_seconds
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
        accepted.append((command, account, draft, hold))
    if not accepted:
        return outcomes
    after, by_tx = await spend(
        ctx, [(draft, account.id) for _, account, draft, _ in accepted], to_held=True
    )
    await hold_store.insert_holds(ctx.conn, [hold for _, _, _, hold in accepted])
    for command, account, draft, hold in accepted:
        outcomes[command.id] = held(command, draft, hold, after[account.id], by_tx[draft.id])
    return outcomes


def held(
    command: HoldCredits, draft: TransactionDraft, hold: Hold, after: tuple[int, int],
    taken: list[Allocation],
) -> Outcome:
    """An applied hold: its stored result and its two events."""
    return applied(
        command,
        {
            "transactionId": str(draft.id),
            "holdId": str(hold.id),
            "credits": draft.credits,
            "reference": hold.reference,
            "expiresAt": hold.expires_at.isoformat(),
            "balance": balance(after),
        },
        announce(
            "credits.held",
            command,
            command.user_id,
            draft,
            after=after,
            delta=-draft.credits,
            held_delta=draft.credits,
            allocations=taken,
        ),
    )


async def hold_credits(ctx: LedgerContext, command: HoldCredits) -> Outcome:
    """One hold (`hold_credits_many` with one element)."""
    outcome = (await hold_credits_many(ctx, [command]))[command.id]
    if isinstance(outcome, PaymentError):
        raise outcome
    return outcome


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
