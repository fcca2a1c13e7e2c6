"""Command handlers of the ledger: one function per use case, `verb_noun(ctx, cmd)`.

Each handler runs inside the batch's DB transaction (and its own savepoint), locks the
accounts it touches first, raises a `PaymentError` to reject (the savepoint then undoes
everything it wrote) and returns an `Outcome` whose events go to the outbox.

Charges, the hot path, are applied set-based for many users at once
(`charge_credits_many`); a single charge is the same code with one element.
"""

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from schemas.commands import (
    CaptureCredits,
    ChargeCredits,
    CommandEnvelope,
    ExpireCredits,
    GrantCredits,
    HoldCredits,
    RefundCredits,
    ReleaseCredits,
    TransferCredits,
)
from services.errors import (
    CreditLimitExceeded,
    InsufficientCredits,
    InvalidState,
    NotFound,
    PaymentError,
    TransactionLimitExceeded,
    ValidationFailed,
)
from services.ledger import repository as repo
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.models import (
    AVAILABLE,
    HELD,
    PROMOTIONAL,
    REFUNDED,
    Account,
    Allocation,
    Hold,
    Leg,
    TransactionDraft,
)

APPLIED = "applied"


def _check_amount(ctx: LedgerContext, credits: int) -> None:
    if credits > ctx.settings.max_transaction_amount:
        raise TransactionLimitExceeded(
            f"{credits} credits exceed the limit of {ctx.settings.max_transaction_amount} "
            "per transaction",
            credits=credits,
            limit=ctx.settings.max_transaction_amount,
        )


def _check_balance_cap(ctx: LedgerContext, account: Account, credits: int) -> None:
    if account.total + credits > ctx.settings.max_credit_balance:
        raise CreditLimitExceeded(
            f"the balance would be {account.total + credits}, above the limit of "
            f"{ctx.settings.max_credit_balance}",
            balance=account.total,
            credits=credits,
            limit=ctx.settings.max_credit_balance,
        )


def _check_funds(account: Account | None, credits: int) -> Account:
    available = account.available if account else 0
    if account is None or available < credits:
        raise InsufficientCredits(
            f"{credits} credits requested, {available} available",
            available=available,
            requested=credits,
        )
    return account


async def _lock_one(ctx: LedgerContext, user_id: str, create: bool = False) -> Account | None:
    if create:
        await repo.ensure_accounts(ctx.conn, [user_id])
    return (await repo.lock_accounts(ctx.conn, [user_id])).get(user_id)


async def _write(
    ctx: LedgerContext,
    drafts: list[TransactionDraft],
    deltas: dict[int, tuple[int, int]],
) -> dict[int, tuple[int, int]]:
    """Move user balances by `deltas` and write the postings with the balances after."""
    after = await repo.adjust_accounts(ctx.conn, deltas)
    await repo.insert_postings(ctx.conn, drafts, after)
    return after


def _applied(command: CommandEnvelope, result: dict[str, Any], events: list[Any]) -> Outcome:
    return Outcome(command=command, status=APPLIED, result=result, events=events)


def _balance(after: tuple[int, int]) -> dict[str, int]:
    return {"available": after[0], "held": after[1], "total": after[0] + after[1]}


async def charge_credits_many(
    ctx: LedgerContext, commands: list[ChargeCredits]
) -> dict[uuid.UUID, Outcome | PaymentError]:
    """Apply charges of distinct users with a fixed number of statements.

    Rejections (limits, insufficient credits) are decided up front from the locked
    balances, so one refused charge costs nothing to the others.
    """
    users = [c.user_id for c in commands]
    if len(set(users)) != len(users):
        raise ValueError("charge_credits_many takes each user at most once")
    accounts = await repo.lock_accounts(ctx.conn, users)
    outcomes: dict[uuid.UUID, Outcome | PaymentError] = {}
    accepted: list[tuple[ChargeCredits, Account, TransactionDraft]] = []
    bookings = ctx.system("bookings")
    for command in commands:
        credits = command.payload.credits
        try:
            _check_amount(ctx, credits)
            account = _check_funds(accounts.get(command.user_id), credits)
        except PaymentError as error:
            outcomes[command.id] = error
            continue
        draft = TransactionDraft(
            type="CREDIT_USAGE",
            user_id=command.user_id,
            credits=credits,
            command_id=command.id,
            reference=command.payload.reference,
            metadata=command.payload.metadata,
            legs=[Leg(account.id, AVAILABLE, -credits), Leg(bookings, AVAILABLE, credits)],
        )
        accepted.append((command, account, draft))
    if not accepted:
        return outcomes
    drafts = [draft for _, _, draft in accepted]
    await repo.insert_transactions(ctx.conn, drafts)
    allocations = await repo.take_from_batches(
        ctx.conn, [(d.id, a.id, d.credits) for _, a, d in accepted]
    )
    by_tx: dict[uuid.UUID, list[Allocation]] = {}
    for allocation in allocations:
        by_tx.setdefault(allocation.transaction_id, []).append(allocation)
    after = await _write(ctx, drafts, {a.id: (-d.credits, 0) for _, a, d in accepted})
    for command, account, draft in accepted:
        taken = by_tx[draft.id]
        outcomes[command.id] = _applied(
            command,
            {
                "transactionId": str(draft.id),
                "credits": draft.credits,
                "reference": draft.reference,
                "balance": _balance(after[account.id]),
                "batches": [a.as_event_item() for a in taken],
            },
            announce(
                "credits.charged",
                command,
                command.user_id,
                draft,
                after=after[account.id],
                delta=-draft.credits,
                allocations=taken,
            ),
        )
    return outcomes


async def charge_credits(ctx: LedgerContext, command: ChargeCredits) -> Outcome:
    outcome = (await charge_credits_many(ctx, [command]))[command.id]
    if isinstance(outcome, PaymentError):
        raise outcome
    return outcome


async def grant_batch(
    ctx: LedgerContext,
    command: CommandEnvelope,
    *,
    credits: int,
    source: str,
    transaction_type: str,
    system_code: str,
    expires_at: Any = None,
    reason: str | None = None,
    metadata: dict[str, Any] | None = None,
    amount_minor: int | None = None,
    currency: str | None = None,
    stripe_payment_intent_id: str | None = None,
    paid: bool = False,
) -> Outcome:
    """Credit a new batch to the command's user; the common path of every grant.

    Purchases, memberships and promotions grant through here too, each with its own
    batch source, transaction type and system account. A `paid` grant skips the
    limits: they were checked before the customer paid, and refusing credits that
    were paid for would keep the customer's money.
    """
    if not paid:
        _check_amount(ctx, credits)
    expiry = expires_at or ctx.default_expiry()
    if expiry <= ctx.now:
        raise ValidationFailed("expiresAt must be in the future", expiresAt=str(expiry))
    account = await _lock_one(ctx, command.user_id, create=True)
    assert account is not None
    if not paid:
        _check_balance_cap(ctx, account, credits)
    draft = TransactionDraft(
        type=transaction_type,
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference=reason,
        metadata={**(metadata or {}), **({"reason": reason} if reason else {})},
        amount_minor=amount_minor,
        currency=currency,
        stripe_payment_intent_id=stripe_payment_intent_id,
        legs=[Leg(account.id, AVAILABLE, credits), Leg(ctx.system(system_code), AVAILABLE, -credits)],
    )
    await repo.insert_transactions(ctx.conn, [draft])
    batch_id = uuid.uuid4()
    await repo.insert_batch(
        ctx.conn,
        batch_id=batch_id,
        account_id=account.id,
        user_id=command.user_id,
        source=source,
        credits=credits,
        expires_at=expiry,
        transaction_id=draft.id,
        source_ref=str(command.id),
    )
    allocation = Allocation(draft.id, batch_id, credits, expiry, source)
    await repo.insert_allocations(ctx.conn, [allocation])
    after = await _write(ctx, [draft], {account.id: (credits, 0)})
    return _applied(
        command,
        {
            "transactionId": str(draft.id),
            "batchId": str(batch_id),
            "credits": credits,
            "expiresAt": expiry.isoformat(),
            "balance": _balance(after[account.id]),
        },
        announce(
            "credits.granted",
            command,
            command.user_id,
            draft,
            after=after[account.id],
            delta=credits,
            allocations=[allocation],
        ),
    )


async def grant_credits(ctx: LedgerContext, command: GrantCredits) -> Outcome:
    """Goodwill / adjustment: a PROMOTIONAL batch, transaction type ADJUSTMENT."""
    return await grant_batch(
        ctx,
        command,
        credits=command.payload.credits,
        source=PROMOTIONAL,
        transaction_type="ADJUSTMENT",
        system_code="adjustments",
        expires_at=command.payload.expires_at,
        reason=command.payload.reason,
        metadata=command.payload.metadata,
    )


async def hold_credits(ctx: LedgerContext, command: HoldCredits) -> Outcome:
    """Move credits from available to held, remembering the batches they came from."""
    payload = command.payload
    _check_amount(ctx, payload.credits)
    account = _check_funds(await _lock_one(ctx, command.user_id), payload.credits)
    if await repo.open_hold_exists(ctx.conn, command.user_id, payload.reference):
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
    await repo.insert_transactions(ctx.conn, [draft])
    taken = await repo.take_from_batches(ctx.conn, [(draft.id, account.id, payload.credits)])
    after = await _write(ctx, [draft], {account.id: (-payload.credits, payload.credits)})
    await repo.insert_hold(ctx.conn, hold)
    return _applied(
        command,
        {
            "transactionId": str(draft.id),
            "holdId": str(hold.id),
            "credits": payload.credits,
            "reference": payload.reference,
            "expiresAt": hold.expires_at.isoformat(),
            "balance": _balance(after[account.id]),
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


async def return_to_batches(
    ctx: LedgerContext,
    account: Account,
    *,
    return_transaction_id: uuid.UUID,
    debit_transaction_id: uuid.UUID,
    credits: int,
) -> list[Allocation]:
    """Give `credits` taken by a debit back to the batches they came from.

    Latest-expiring batches are refilled first. A batch that has expired (or is past its
    expiry) is not revived: its share goes to one fresh REFUNDED batch with a new expiry.
    """
    outstanding = await repo.outstanding_by_batch(ctx.conn, debit_transaction_id)
    if sum(row[1] for row in outstanding) < credits:
        raise InvalidState(
            "fewer credits are outstanding than the return asks for",
            outstanding=sum(row[1] for row in outstanding),
            requested=credits,
        )
    allocations: list[Allocation] = []
    to_refunded: list[tuple[uuid.UUID, int]] = []
    left = credits
    for batch_id, owed, status, expires_at, source in outstanding:
        if left == 0:
            break
        n = min(owed, left)
        left -= n
        if status == "open" and expires_at > ctx.now:
            await repo.add_to_batch_remaining(ctx.conn, batch_id, n)
            allocations.append(
                Allocation(
                    return_transaction_id, batch_id, n, expires_at, source,
                    origin_batch_id=batch_id, debit_transaction_id=debit_transaction_id,
                )
            )
        else:
            to_refunded.append((batch_id, n))
    if to_refunded:
        fresh_id, expiry = uuid.uuid4(), ctx.default_expiry()
        await repo.insert_batch(
            ctx.conn,
            batch_id=fresh_id,
            account_id=account.id,
            user_id=account.user_id,
            source=REFUNDED,
            credits=sum(n for _, n in to_refunded),
            expires_at=expiry,
            transaction_id=return_transaction_id,
            source_ref=str(debit_transaction_id),
        )
        allocations += [
            Allocation(
                return_transaction_id, fresh_id, n, expiry, REFUNDED,
                origin_batch_id=origin, debit_transaction_id=debit_transaction_id,
            )
            for origin, n in to_refunded
        ]
    await repo.insert_allocations(ctx.conn, allocations)
    return allocations


async def _open_hold(ctx: LedgerContext, command: CaptureCredits | ReleaseCredits) -> Hold:
    payload = command.payload
    if payload.hold_id is None and payload.reference is None:
        raise ValidationFailed("name the hold by holdId or reference")
    hold = await repo.find_hold(ctx.conn, command.user_id, payload.hold_id, payload.reference)
    if hold is None:
        raise NotFound("no such hold", holdId=payload.hold_id, reference=payload.reference)
    if hold.status != "open":
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
    await repo.insert_transactions(ctx.conn, [draft])
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
    account = await _lock_one(ctx, command.user_id)
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
    await repo.insert_transactions(ctx.conn, [usage])
    drafts = [usage]
    rest = hold.credits - credits
    if rest:
        release, _ = await release_hold(ctx, command, account, hold, rest, "partial capture")
        drafts.append(release)
    after = await _write(ctx, drafts, {account.id: (rest, -hold.credits)})
    await repo.settle_hold(ctx.conn, hold.id, "captured", usage.id)
    return _applied(
        command,
        {
            "transactionId": str(usage.id),
            "holdId": str(hold.id),
            "credits": credits,
            "released": rest,
            "balance": _balance(after[account.id]),
        },
        announce(
            "credits.charged",
            command,
            command.user_id,
            usage,
            after=after[account.id],
            delta=rest,
            held_delta=-hold.credits,
        ),
    )


async def release_credits(ctx: LedgerContext, command: ReleaseCredits) -> Outcome:
    """Cancel a hold: its credits return to their batches (expired ones: REFUNDED)."""
    account = await _lock_one(ctx, command.user_id)
    if account is None:
        raise NotFound("no such hold", holdId=command.payload.hold_id)
    hold = await _open_hold(ctx, command)
    reason = command.payload.reason
    draft, returned = await release_hold(ctx, command, account, hold, hold.credits, reason)
    after = await _write(ctx, [draft], {account.id: (hold.credits, -hold.credits)})
    status = "expired" if reason == "expired" and hold.expires_at <= ctx.now else "released"
    await repo.settle_hold(ctx.conn, hold.id, status, draft.id)
    return _applied(
        command,
        {
            "transactionId": str(draft.id),
            "holdId": str(hold.id),
            "credits": hold.credits,
            "status": status,
            "balance": _balance(after[account.id]),
        },
        announce(
            "credits.released",
            command,
            command.user_id,
            draft,
            after=after[account.id],
            delta=hold.credits,
            held_delta=-hold.credits,
            allocations=returned,
        ),
    )


async def refund_credits(ctx: LedgerContext, command: RefundCredits) -> Outcome:
    """Refund spent credits (all that is left, or part) of one CREDIT_USAGE transaction."""
    payload = command.payload
    account = await _lock_one(ctx, command.user_id)
    original = await repo.find_transaction(ctx.conn, payload.transaction_id)
    if account is None or original is None or original["user_id"] != command.user_id:
        raise NotFound("no such transaction for this user", transactionId=payload.transaction_id)
    if original["type"] != "CREDIT_USAGE":
        raise InvalidState(
            f"only CREDIT_USAGE can be refunded, this is {original['type']}",
            transactionId=payload.transaction_id,
        )
    refundable = original["credits"] - await repo.refunded_credits(ctx.conn, original["id"])
    credits = payload.credits or refundable
    if credits > refundable or refundable == 0:
        raise InvalidState(
            f"{credits} credits asked, {refundable} left to refund",
            refundable=refundable,
            requested=credits,
        )
    # A captured hold's credits were taken from batches by the hold transaction.
    debit = original["related_transaction_id"] if original["hold_id"] else original["id"]
    draft = TransactionDraft(
        type="CREDIT_REFUND",
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference=original["reference"],
        related_transaction_id=original["id"],
        metadata={"reason": payload.reason},
        legs=[Leg(account.id, AVAILABLE, credits), Leg(ctx.system("refunds"), AVAILABLE, -credits)],
    )
    await repo.insert_transactions(ctx.conn, [draft])
    returned = await return_to_batches(
        ctx, account, return_transaction_id=draft.id, debit_transaction_id=debit, credits=credits
    )
    after = await _write(ctx, [draft], {account.id: (credits, 0)})
    return _applied(
        command,
        {
            "transactionId": str(draft.id),
            "refundedTransactionId": str(original["id"]),
            "credits": credits,
            "refundableLeft": refundable - credits,
            "batches": [a.as_event_item() for a in returned],
            "balance": _balance(after[account.id]),
        },
        announce(
            "credits.refunded",
            command,
            command.user_id,
            draft,
            after=after[account.id],
            delta=credits,
            allocations=returned,
        ),
    )


async def transfer_credits(ctx: LedgerContext, command: TransferCredits) -> Outcome:
    """Admin move between users: the recipient gets batches with the same expiry."""
    payload = command.payload
    if payload.to_user_id == command.user_id:
        raise ValidationFailed("a transfer needs two different users")
    _check_amount(ctx, payload.credits)
    await repo.ensure_accounts(ctx.conn, [payload.to_user_id])
    accounts = await repo.lock_accounts(ctx.conn, [command.user_id, payload.to_user_id])
    sender = _check_funds(accounts.get(command.user_id), payload.credits)
    recipient = accounts[payload.to_user_id]
    _check_balance_cap(ctx, recipient, payload.credits)
    draft = TransactionDraft(
        type="CREDIT_TRANSFER",
        user_id=command.user_id,
        counterparty_user_id=payload.to_user_id,
        credits=payload.credits,
        command_id=command.id,
        reference=payload.reason,
        metadata={"reason": payload.reason, "toUserId": payload.to_user_id},
        legs=[
            Leg(sender.id, AVAILABLE, -payload.credits),
            Leg(recipient.id, AVAILABLE, payload.credits),
        ],
    )
    await repo.insert_transactions(ctx.conn, [draft])
    taken = await repo.take_from_batches(ctx.conn, [(draft.id, sender.id, payload.credits)])
    given: list[Allocation] = []
    for allocation in taken:
        batch_id = uuid.uuid4()
        credits = -allocation.amount
        await repo.insert_batch(
            ctx.conn,
            batch_id=batch_id,
            account_id=recipient.id,
            user_id=recipient.user_id,
            source=allocation.source,
            credits=credits,
            expires_at=allocation.expires_at,
            transaction_id=draft.id,
            source_ref=str(allocation.batch_id),
        )
        given.append(Allocation(draft.id, batch_id, credits, allocation.expires_at, allocation.source))
    await repo.insert_allocations(ctx.conn, given)
    after = await _write(
        ctx, [draft], {sender.id: (-payload.credits, 0), recipient.id: (payload.credits, 0)}
    )
    events: list[Any] = []
    for account, delta, moved in ((sender, -payload.credits, taken), (recipient, payload.credits, given)):
        events += announce(
            "credits.transferred",
            command,
            account.user_id,
            draft,
            after=after[account.id],
            delta=delta,
            allocations=moved,
        )
    return _applied(
        command,
        {
            "transactionId": str(draft.id),
            "credits": payload.credits,
            "fromUserId": command.user_id,
            "toUserId": payload.to_user_id,
            "balance": _balance(after[sender.id]),
            "recipientBalance": _balance(after[recipient.id]),
        },
        events,
    )


async def expire_credits(ctx: LedgerContext, command: ExpireCredits) -> Outcome:
    """Expire what is left of one due batch (CREDIT_EXPIRY to the `expired` account)."""
    account = await _lock_one(ctx, command.user_id)
    batch = await repo.lock_batch(ctx.conn, command.payload.batch_id)
    if account is None or batch is None or batch["user_id"] != command.user_id:
        raise NotFound("no such batch for this user", batchId=command.payload.batch_id)
    if batch["status"] == "expired":
        return _applied(command, {"batchId": str(batch["id"]), "credits": 0, "already": True}, [])
    if batch["expires_at"] > ctx.now:
        raise InvalidState("the batch is not due", expiresAt=batch["expires_at"].isoformat())
    credits = batch["remaining"]
    if credits == 0:
        await repo.expire_batch_row(ctx.conn, batch["id"])
        return _applied(command, {"batchId": str(batch["id"]), "credits": 0}, [])
    draft = TransactionDraft(
        type="CREDIT_EXPIRY",
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference=str(batch["id"]),
        legs=[Leg(account.id, AVAILABLE, -credits), Leg(ctx.system("expired"), AVAILABLE, credits)],
    )
    await repo.insert_transactions(ctx.conn, [draft])
    allocation = Allocation(draft.id, batch["id"], -credits, batch["expires_at"], batch["source"])
    await repo.insert_allocations(ctx.conn, [allocation])
    await repo.expire_batch_row(ctx.conn, batch["id"])
    after = await _write(ctx, [draft], {account.id: (-credits, 0)})
    return _applied(
        command,
        {
            "transactionId": str(draft.id),
            "batchId": str(batch["id"]),
            "credits": credits,
            "balance": _balance(after[account.id]),
        },
        announce(
            "credits.expired",
            command,
            command.user_id,
            draft,
            after=after[account.id],
            delta=-credits,
            allocations=[allocation],
        ),
    )


Handler = Callable[[LedgerContext, Any], Awaitable[Outcome]]
HANDLERS: dict[str, Handler] = {
    "credits.charge": charge_credits,
    "credits.hold": hold_credits,
    "credits.capture": capture_credits,
    "credits.release": release_credits,
    "credits.refund": refund_credits,
    "credits.grant": grant_credits,
    "credits.transfer": transfer_credits,
    "credits.expire": expire_credits,
}
