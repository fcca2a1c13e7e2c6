"""Refunds of spent credits (CREDIT_USAGE), back to the batches they came from."""

from schemas.commands import RefundCredits
from services.errors import InvalidState, NotFound
from services.ledger import journal_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.handlers.common import applied, lock_one, write
from services.ledger.handlers.returns import claim_returns, return_to_batches
from services.ledger.models import AVAILABLE, Leg, TransactionDraft


async def refund_credits(ctx: LedgerContext, command: RefundCredits) -> Outcome:
    """Refund spent credits (all that is left, or part) of one CREDIT_USAGE transaction."""
    payload = command.payload
    account = await lock_one(ctx, command.user_id)
    original = await journal_store.find_transaction(ctx.conn, payload.transaction_id)
    if account is None or original is None or original["user_id"] != command.user_id:
        raise NotFound("no such transaction for this user", transactionId=payload.transaction_id)
    if original["type"] != "CREDIT_USAGE":
        raise InvalidState(
            f"only CREDIT_USAGE can be refunded, this is {original['type']}",
            transactionId=payload.transaction_id,
        )
    refundable = original["credits"] - await journal_store.refunded_credits(ctx.conn, original["id"])
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
    await journal_store.insert_transactions(ctx.conn, [draft])
    returned = await return_to_batches(
        ctx, account, return_transaction_id=draft.id, debit_transaction_id=debit, credits=credits
    )
    after = await write(ctx, [draft], {account.id: (credits, 0)})
    account.available, account.held = after[account.id]
    events = announce(
        "credits.refunded",
        command,
        command.user_id,
        draft,
        after=after[account.id],
        delta=credits,
        allocations=returned,
    )
    events += await claim_returns(ctx, command, account, returned)
    return applied(
        command,
        {
            "transactionId": str(draft.id),
            "refundedTransactionId": str(original["id"]),
            "credits": credits,
            "refundableLeft": refundable - credits,
            "batches": [a.as_event_item() for a in returned],
            "balance": account.balance(),
        },
        events,
    )
