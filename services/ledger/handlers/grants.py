"""Grants: every way credits enter an account as a new batch."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from schemas.commands import CommandEnvelope, GrantCredits
from services.errors import PaymentError, ValidationFailed
from services.ledger import account_store, batch_store, journal_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.handlers.common import applied, balance, check_amount, check_balance_cap, write
from services.ledger.models import AVAILABLE, PROMOTIONAL, Allocation, Leg, TransactionDraft


@dataclass(frozen=True)
class GrantSpec:
    """One grant of a new batch to a command's user: what `grant_batches` writes.

    Purchases, memberships and promotions grant through here too, each with its own
    batch source, transaction type and system account. A `paid` grant skips the
    limits: they were checked before the customer paid, and refusing credits that
    were paid for would keep the customer's money.
    """

    command: CommandEnvelope
    credits: int
    source: str
    transaction_type: str
    system_code: str
    expires_at: datetime | None = None
    reason: str | None = None
    metadata: dict[str, Any] | None = None
    amount_minor: int | None = None
    currency: str | None = None
    stripe_payment_intent_id: str | None = None
    paid: bool = False
    purchase_id: uuid.UUID | None = None


def _expiry(ctx: LedgerContext, spec: GrantSpec) -> datetime:
    """The batch's expiry, after the checks that need no account (a grant they refuse
    creates none)."""
    if not spec.paid:
        check_amount(ctx, spec.credits)
    expiry = spec.expires_at or ctx.default_expiry()
    if expiry <= ctx.now:
        raise ValidationFailed("expiresAt must be in the future", expiresAt=str(expiry))
    return expiry


async def grant_batches(
    ctx: LedgerContext, specs: Sequence[GrantSpec]
) -> list[Outcome | PaymentError]:
    """Credit a new batch per spec, for distinct users, with a fixed number of statements.

    The common path of every grant, one grant or a round of them: accounts are created
    when missing (not for a grant refused by its amount or expiry) and locked together,
    the balance cap is decided from the locked balances, so one refused grant costs the
    others nothing. Returns, in the
    order of `specs`, each one's outcome or the error that refused it.
    """
    users = [s.command.user_id for s in specs]
    if len(set(users)) != len(users):
        raise ValueError("grant_batches takes each user at most once")
    results: list[Outcome | PaymentError | None] = []
    expiries: dict[int, datetime] = {}
    for index, spec in enumerate(specs):
        try:
            expiries[index] = _expiry(ctx, spec)
            results.append(None)
        except PaymentError as error:
            results.append(error)
    if not expiries:
        return [r for r in results if r is not None]
    passing = [specs[i].command.user_id for i in expiries]
    await account_store.ensure_accounts(ctx.conn, passing)
    accounts = await account_store.lock_accounts(ctx.conn, passing)
    accepted: list[tuple[int, TransactionDraft, Allocation, int]] = []
    batches: list[batch_store.NewBatch] = []
    for index, expiry in expiries.items():
        spec = specs[index]
        command, account = spec.command, accounts[spec.command.user_id]
        if not spec.paid:
            try:
                check_balance_cap(ctx, account, spec.credits)
            except PaymentError as error:
                results[index] = error
                continue
        draft = TransactionDraft(
            type=spec.transaction_type,
            user_id=command.user_id,
            credits=spec.credits,
            command_id=command.id,
            reference=spec.reason,
            metadata={**(spec.metadata or {}), **({"reason": spec.reason} if spec.reason else {})},
            amount_minor=spec.amount_minor,
            currency=spec.currency,
            stripe_payment_intent_id=spec.stripe_payment_intent_id,
            legs=[
                Leg(account.id, AVAILABLE, spec.credits),
                Leg(ctx.system(spec.system_code), AVAILABLE, -spec.credits),
            ],
        )
        batch = batch_store.NewBatch(
            uuid.uuid4(), account.id, command.user_id, spec.source, spec.credits, expiry, draft.id,
            str(command.id), spec.purchase_id,
        )
        allocation = Allocation(
            draft.id, batch.id, spec.credits, expiry, spec.source, purchase_id=spec.purchase_id
        )
        accepted.append((index, draft, allocation, account.id))
        batches.append(batch)
    if accepted:
        drafts = [draft for _, draft, _, _ in accepted]
        await journal_store.insert_transactions(ctx.conn, drafts)
        await batch_store.insert_batches(ctx.conn, batches)
        await batch_store.insert_allocations(ctx.conn, [a for _, _, a, _ in accepted])
        after = await write(ctx, drafts, {account_id: (d.credits, 0) for _, d, _, account_id in accepted})
        for index, draft, allocation, account_id in accepted:
            results[index] = granted(specs[index].command, draft, allocation, after[account_id])
    return [r for r in results if r is not None]


async def grant_batch(ctx: LedgerContext, command: CommandEnvelope, **grant: Any) -> Outcome:
    """One grant (the keywords of `GrantSpec`); raises the `PaymentError` that refused it."""
    [result] = await grant_batches(ctx, [GrantSpec(command, **grant)])
    if isinstance(result, PaymentError):
        raise result
    return result


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


def goodwill(command: GrantCredits) -> GrantSpec:
    """Goodwill / adjustment: a PROMOTIONAL batch, transaction type ADJUSTMENT."""
    return GrantSpec(
        command,
        credits=command.payload.credits,
        source=PROMOTIONAL,
        transaction_type="ADJUSTMENT",
        system_code="adjustments",
        expires_at=command.payload.expires_at,
        reason=command.payload.reason,
        metadata=command.payload.metadata,
    )


async def grant_credits(ctx: LedgerContext, command: GrantCredits) -> Outcome:
    """One goodwill grant (`grant_credits_many` with one element)."""
    [result] = await grant_batches(ctx, [goodwill(command)])
    if isinstance(result, PaymentError):
        raise result
    return result


async def grant_credits_many(
    ctx: LedgerContext, commands: list[GrantCredits]
) -> dict[uuid.UUID, Outcome | PaymentError]:
    """Goodwill grants of distinct users, set-based (a bulk grant, the bench's grants)."""
    results = await grant_batches(ctx, [goodwill(c) for c in commands])
    return {c.id: r for c, r in zip(commands, results, strict=True)}
