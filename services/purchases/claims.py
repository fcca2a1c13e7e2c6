"""Credits coming back to a purchase's batches pay what the purchase owes, or freeze.

A refund or a lost chargeback can only take back the purchase's credits that are
spendable at that moment: credits held by a booking (or spent and later refunded to
their batches) are out of reach. What could not be taken stays owed on the purchase
(`shortfall_credits`), and when such credits come back (a hold released, a usage
refunded, a freeze released) they pay that debt first, in the same transaction as the
return. While a dispute is open, what comes back to the purchase joins the dispute's
freeze, so the bank's decision covers it too.

The ledger calls this through `LedgerContext.return_claims` (wired in the bootstrap),
after the return's own postings, with `account` holding the balances after them.
"""

import uuid
from dataclasses import dataclass

from schemas.commands import CommandEnvelope
from schemas.events import EventEnvelope
from services.ledger import account_store, batch_store, journal_store
from services.ledger.context import LedgerContext
from services.ledger.events import announce
from services.ledger.handlers.common import take_in_order
from services.ledger.handlers.freeze import freeze_batches
from services.ledger.models import AVAILABLE, Account, Allocation, Leg, TransactionDraft
from services.purchases import store

DISPUTE_HOLD_DAYS = 180  # longer than any card network's dispute window


def dispute_reference(dispute_id: str) -> str:
    return f"dispute:{dispute_id}"


@dataclass
class Piece:
    """Credits just returned to one batch, and how many of them are still unclaimed."""

    allocation: Allocation
    left: int


def _take(pieces: list[Piece], credits: int) -> list[tuple[Allocation, int]]:
    """Up to `credits` from the returned pieces, in order; what is taken is used up."""
    taken: list[tuple[Allocation, int]] = []
    for piece in pieces:
        n = min(piece.left, credits)
        if n:
            taken.append((piece.allocation, n))
            piece.left -= n
            credits -= n
    return taken


async def claim_returned_credits(
    ctx: LedgerContext, command: CommandEnvelope, account: Account, returned: list[Allocation]
) -> list[EventEnvelope]:
    """Pay each owing purchase from what just came back to it, then freeze the rest of a
    disputed purchase's share."""
    by_purchase: dict[uuid.UUID, list[Piece]] = {}
    for allocation in returned:
        if allocation.purchase_id is not None and allocation.amount > 0:
            by_purchase.setdefault(allocation.purchase_id, []).append(
                Piece(allocation, allocation.amount)
            )
    events: list[EventEnvelope] = []
    for claim in await store.lock_claims(ctx.conn, sorted(by_purchase)):
        if claim.user_id != account.user_id:
            continue  # batches keep the buyer's purchase; nothing else can reach here
        pieces = by_purchase[claim.id]
        back = sum(piece.left for piece in pieces)
        if claim.shortfall:
            events += await _pay_debt(
                ctx, command, account, claim, _take(pieces, min(claim.shortfall, back))
            )
        rest = _take(pieces, back)
        if claim.open_dispute and rest:
            events += await _freeze_for_dispute(ctx, command, account, claim, rest)
    return events


async def take_back(
    ctx: LedgerContext,
    command: CommandEnvelope,
    account: Account,
    claim: store.Claim,
    batches: list[batch_store.OpenBatch],
    credits: int,
    *,
    money: tuple[int, str] | None = None,
    reason: str | None = None,
) -> tuple[TransactionDraft, list[EventEnvelope]]:
    """PURCHASE_REVERSAL of `credits` from the purchase's `batches` (in their order) to
    the `purchases` account: the one way a purchase gets credits back, for a refund
    (`money`: the amount refunded by it) and for a debt paid by returning credits."""
    draft = TransactionDraft(
        type="PURCHASE_REVERSAL",
        user_id=account.user_id,
        credits=credits,
        command_id=command.id,
        reference=claim.payment_intent_id,
        amount_minor=money[0] if money else None,
        currency=money[1] if money else None,
        stripe_payment_intent_id=claim.payment_intent_id,
        related_transaction_id=claim.grant_transaction_id,
        metadata={"purchaseId": str(claim.id), "packId": claim.pack_id,
                  **({"reason": reason} if reason else {})},
        legs=[Leg(account.id, AVAILABLE, -credits),
              Leg(ctx.system("purchases"), AVAILABLE, credits)],
    )
    await journal_store.insert_transactions(ctx.conn, [draft])
    taken = take_in_order(draft.id, batches, credits)
    await batch_store.debit_batches(ctx.conn, taken)
    after = await account_store.adjust_accounts(ctx.conn, {account.id: (-credits, 0)})
    await journal_store.insert_postings(ctx.conn, [draft], after)
    account.available, account.held = after[account.id]
    return draft, announce("credits.revoked", command, account.user_id, draft,
                           after=after[account.id], delta=-credits, allocations=taken)


def _batches(pieces: list[tuple[Allocation, int]]) -> list[batch_store.OpenBatch]:
    return [batch_store.OpenBatch(a.batch_id, n, a.expires_at, a.source) for a, n in pieces]


async def _pay_debt(
    ctx: LedgerContext,
    command: CommandEnvelope,
    account: Account,
    claim: store.Claim,
    pieces: list[tuple[Allocation, int]],
) -> list[EventEnvelope]:
    credits = sum(n for _, n in pieces)
    _, events = await take_back(ctx, command, account, claim, _batches(pieces), credits,
                                reason="owed by a refunded or charged-back purchase")
    await store.pay_debt(ctx.conn, claim.id, credits)
    return events


async def _freeze_for_dispute(
    ctx: LedgerContext,
    command: CommandEnvelope,
    account: Account,
    claim: store.Claim,
    pieces: list[tuple[Allocation, int]],
) -> list[EventEnvelope]:
    assert claim.open_dispute is not None
    hold, events = await freeze_batches(
        ctx, command, account, _batches(pieces), reference=dispute_reference(claim.open_dispute),
        days=DISPUTE_HOLD_DAYS,
        metadata={"purchaseId": str(claim.id), "disputeId": claim.open_dispute},
    )
    if hold is not None:
        await store.add_frozen(ctx.conn, claim.open_dispute, hold.credits)
    return events
