"""Admin transfers of credits between two users."""

import uuid
from typing import Any

from schemas.commands import TransferCredits
from services.errors import ValidationFailed
from services.ledger import account_store, batch_store, journal_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.handlers.common import (
    applied,
    balance,
    check_amount,
    check_balance_cap,
    check_daily,
    check_funds,
    write,
)
from services.ledger.models import AVAILABLE, Allocation, Leg, TransactionDraft


async def transfer_credits(ctx: LedgerContext, command: TransferCredits) -> Outcome:
    """Admin move between users: the recipient gets batches with the same expiry."""
    payload = command.payload
    if payload.to_user_id == command.user_id:
        raise ValidationFailed("a transfer needs two different users")
    check_amount(ctx, payload.credits)
    await account_store.ensure_accounts(ctx.conn, [payload.to_user_id])
    accounts = await account_store.lock_accounts(ctx.conn, [command.user_id, payload.to_user_id])
    sender = check_funds(accounts.get(command.user_id), payload.credits)
    await check_daily(ctx, command.user_id)
    recipient = accounts[payload.to_user_id]
    check_balance_cap(ctx, recipient, payload.credits)
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
    await journal_store.insert_transactions(ctx.conn, [draft])
    taken = await batch_store.take_from_batches(ctx.conn, [(draft.id, sender.id, payload.credits)])
    given: list[Allocation] = []
    for allocation in taken:
        batch_id = uuid.uuid4()
        credits = -allocation.amount
        await batch_store.insert_batch(
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
    await batch_store.insert_allocations(ctx.conn, given)
    after = await write(
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
    return applied(
        command,
        {
            "transactionId": str(draft.id),
            "credits": payload.credits,
            "fromUserId": command.user_id,
            "toUserId": payload.to_user_id,
            "balance": balance(after[sender.id]),
            "recipientBalance": balance(after[recipient.id]),
        },
        events,
    )
