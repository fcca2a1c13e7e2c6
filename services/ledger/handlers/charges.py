"""Charges, the hot path: set-based for many users at once, a single charge is one element."""

import uuid

from schemas.commands import ChargeCredits
from services.errors import PaymentError
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import announce
from services.ledger.handlers.common import (
    applied,
    balance,
    lock_debtors,
    spend,
)
from services.ledger.models import AVAILABLE, Account, Allocation, Leg, TransactionDraft


async def charge_credits_many(
    ctx: LedgerContext, commands: list[ChargeCredits]
) -> dict[uuid.UUID, Outcome | PaymentError]:
    """Apply charges of distinct users with a fixed number of statements.

    Rejections (limits, insufficient credits) are decided up front from the locked
    balances, so one refused charge costs nothing to the others.
    """
    debtors = await lock_debtors(ctx, [c.user_id for c in commands])
    outcomes: dict[uuid.UUID, Outcome | PaymentError] = {}
    accepted: list[tuple[ChargeCredits, Account, TransactionDraft]] = []
    bookings = ctx.system("bookings")
    for command in commands:
        credits = command.payload.credits
        try:
            account = await debtors.check(ctx, command.user_id, credits)
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
    after, by_tx = await spend(ctx, [(draft, account.id) for _, account, draft in accepted])
    for command, account, draft in accepted:
        outcomes[command.id] = charged(command, draft, after[account.id], by_tx[draft.id])
    return outcomes


def charged(
    command: ChargeCredits,
    draft: TransactionDraft,
    after: tuple[int, int],
    taken: list[Allocation],
) -> Outcome:
    """An applied charge: its stored result and its two events (the bench writes these too)."""
    return applied(
        command,
        {
            "transactionId": str(draft.id),
            "credits": draft.credits,
            "reference": draft.reference,
            "balance": balance(after),
            "batches": [a.as_event_item() for a in taken],
        },
        announce(
            "credits.charged",
            command,
            command.user_id,
            draft,
            after=after,
            delta=-draft.credits,
            allocations=taken,
        ),
    )


async def charge_credits(ctx: LedgerContext, command: ChargeCredits) -> Outcome:
    outcome = (await charge_credits_many(ctx, [command]))[command.id]
    if isinstance(outcome, PaymentError):
        raise outcome
    return outcome
