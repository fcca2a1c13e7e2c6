"""Giving debited credits back to their batches, shared by hold releases and refunds.

Credits that come back may be claimed at once (`claim_returns`): a purchase that owes
credits (refunded or charged back while they were held or spent) takes them back, and
a disputed purchase freezes them. Without this, a release after a refund or a
chargeback would make credits spendable that nobody paid for.
"""

import uuid

from schemas.commands import CommandEnvelope
from schemas.events import EventEnvelope
from services.errors import InvalidState
from services.ledger import batch_store
from services.ledger.context import LedgerContext
from services.ledger.models import REFUNDED, Account, Allocation


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
    outstanding = await batch_store.outstanding_by_batch(ctx.conn, debit_transaction_id)
    if sum(row[1] for row in outstanding) < credits:
        raise InvalidState(
            "fewer credits are outstanding than the return asks for",
            outstanding=sum(row[1] for row in outstanding),
            requested=credits,
        )
    allocations: list[Allocation] = []
    to_refunded: dict[uuid.UUID | None, list[tuple[uuid.UUID, int]]] = {}
    left = credits
    for batch_id, owed, status, expires_at, source, purchase_id in outstanding:
        if left == 0:
            break
        n = min(owed, left)
        left -= n
        if status == "open" and expires_at > ctx.now:
            await batch_store.add_to_batch_remaining(ctx.conn, batch_id, n)
            allocations.append(
                Allocation(
                    return_transaction_id, batch_id, n, expires_at, source,
                    origin_batch_id=batch_id, debit_transaction_id=debit_transaction_id,
                    purchase_id=purchase_id,
                )
            )
        else:
            to_refunded.setdefault(purchase_id, []).append((batch_id, n))
    # One fresh batch per purchase behind the credits, so what a purchase owes can
    # still find them.
    for purchase_id, shares in sorted(to_refunded.items(), key=lambda item: str(item[0])):
        fresh_id, expiry = uuid.uuid4(), ctx.default_expiry()
        await batch_store.insert_batch(
            ctx.conn,
            batch_id=fresh_id,
            account_id=account.id,
            user_id=account.user_id,
            source=REFUNDED,
            credits=sum(n for _, n in shares),
            expires_at=expiry,
            transaction_id=return_transaction_id,
            source_ref=str(debit_transaction_id),
            purchase_id=purchase_id,
        )
        allocations += [
            Allocation(
                return_transaction_id, fresh_id, n, expiry, REFUNDED,
                origin_batch_id=origin, debit_transaction_id=debit_transaction_id,
                purchase_id=purchase_id,
            )
            for origin, n in shares
        ]
    await batch_store.insert_allocations(ctx.conn, allocations)
    return allocations


async def claim_returns(
    ctx: LedgerContext, command: CommandEnvelope, account: Account, returned: list[Allocation]
) -> list[EventEnvelope]:
    """Let purchases claim credits just returned to their batches (after the return's
    postings are written and `account` holds the balances after them)."""
    if ctx.return_claims is None or not any(a.purchase_id for a in returned):
        return []
    return await ctx.return_claims(ctx, command, account, returned)
