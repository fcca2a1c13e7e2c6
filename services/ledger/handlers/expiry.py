"""Expiry of what is left of a due batch."""

from schemas.commands import ExpireCredits
from services.errors import InvalidState, NotFound
from services.ledger import batch_store, journal_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.handlers.common import applied, balance, lock_one, write
from services.ledger.models import AVAILABLE, Allocation, Leg, TransactionDraft


async def expire_credits(ctx: LedgerContext, command: ExpireCredits) -> Outcome:
    """Expire what is left of one due batch (CREDIT_EXPIRY to the `expired` account)."""
    account = await lock_one(ctx, command.user_id)
    batch = await batch_store.lock_batch(ctx.conn, command.payload.batch_id)
    if account is None or batch is None or batch["user_id"] != command.user_id:
        raise NotFound("no such batch for this user", batchId=command.payload.batch_id)
    if batch["status"] == "expired":
        return applied(command, {"batchId": str(batch["id"]), "credits": 0, "already": True}, [])
    if batch["expires_at"] > ctx.now:
        raise InvalidState("the batch is not due", expiresAt=batch["expires_at"].isoformat())
    credits = batch["remaining"]
    if credits == 0:
        await batch_store.expire_batch_row(ctx.conn, batch["id"])
        return applied(command, {"batchId": str(batch["id"]), "credits": 0}, [])
    draft = TransactionDraft(
        type="CREDIT_EXPIRY",
        user_id=command.user_id,
        credits=credits,
        command_id=command.id,
        reference=str(batch["id"]),
        legs=[Leg(account.id, AVAILABLE, -credits), Leg(ctx.system("expired"), AVAILABLE, credits)],
    )
    await journal_store.insert_transactions(ctx.conn, [draft])
    allocation = Allocation(draft.id, batch["id"], -credits, batch["expires_at"], batch["source"])
    await batch_store.insert_allocations(ctx.conn, [allocation])
    await batch_store.expire_batch_row(ctx.conn, batch["id"])
    after = await write(ctx, [draft], {account.id: (-credits, 0)})
    return applied(
        command,
        {
            "transactionId": str(draft.id),
            "batchId": str(batch["id"]),
            "credits": credits,
            "balance": balance(after[account.id]),
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
