"""Giving debited credits back to their batches, shared by hold releases and refunds."""

import uuid

from services.errors import InvalidState
from services.ledger import repository as repo
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
