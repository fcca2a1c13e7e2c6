"""Grants: every way credits enter an account as a new batch."""

import uuid
from typing import Any

from schemas.commands import CommandEnvelope, GrantCredits
from services.errors import ValidationFailed
from services.ledger import batch_store, journal_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.handlers.common import applied, balance, check_amount, check_balance_cap, lock_one, write
from services.ledger.models import AVAILABLE, PROMOTIONAL, Allocation, Leg, TransactionDraft


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
    purchase_id: uuid.UUID | None = None,
) -> Outcome:
    """Credit a new batch to the command's user; the common path of every grant.

    Purchases, memberships and promotions grant through here too, each with its own
    batch source, transaction type and system account. A `paid` grant skips the
    limits: they were checked before the customer paid, and refusing credits that
    were paid for would keep the customer's money.
    """
    if not paid:
        check_amount(ctx, credits)
    expiry = expires_at or ctx.default_expiry()
    if expiry <= ctx.now:
        raise ValidationFailed("expiresAt must be in the future", expiresAt=str(expiry))
    account = await lock_one(ctx, command.user_id, create=True)
    assert account is not None
    if not paid:
        check_balance_cap(ctx, account, credits)
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
    await journal_store.insert_transactions(ctx.conn, [draft])
    batch_id = uuid.uuid4()
    await batch_store.insert_batch(
        ctx.conn,
        batch_id=batch_id,
        account_id=account.id,
        user_id=command.user_id,
        source=source,
        credits=credits,
        expires_at=expiry,
        transaction_id=draft.id,
        source_ref=str(command.id),
        purchase_id=purchase_id,
    )
    allocation = Allocation(draft.id, batch_id, credits, expiry, source, purchase_id=purchase_id)
    await batch_store.insert_allocations(ctx.conn, [allocation])
    after = await write(ctx, [draft], {account.id: (credits, 0)})
    return granted(command, draft, allocation, after[account.id])


def granted(
    command: CommandEnvelope, draft: TransactionDraft, batch: Allocation, after: tuple[int, int]
) -> Outcome:
    """An applied grant of the new `batch`: its stored result and its two events (the
    bench's funding writes these too)."""
    return applied(
        command,
        {
            "transactionId": str(draft.id),
            "batchId": str(batch.batch_id),
            "credits": batch.amount,
            "expiresAt": batch.expires_at.isoformat(),
            "balance": balance(after),
        },
        announce(
            "credits.granted",
            command,
            command.user_id,
            draft,
            after=after,
            delta=batch.amount,
            allocations=[batch],
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
