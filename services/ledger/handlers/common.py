"""What every ledger handler shares: limit checks, account locking, posting, results."""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.commands import CommandEnvelope
from services.errors import CreditLimitExceeded, InsufficientCredits, PaymentError, TransactionLimitExceeded
from services.ledger import account_store, batch_store, journal_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.models import Account, Allocation, TransactionDraft

APPLIED = "applied"

Handler = Callable[[LedgerContext, Any], Awaitable[Outcome]]
SetHandler = Callable[[LedgerContext, list[Any]], Awaitable[dict[uuid.UUID, Outcome | PaymentError]]]
"""Applies commands of one type for distinct users with a fixed number of statements:
each command's outcome, or the error that refused it."""


def check_amount(ctx: LedgerContext, credits: int) -> None:
    if credits > ctx.settings.max_transaction_amount:
        raise TransactionLimitExceeded(
            f"{credits} credits exceed the limit of {ctx.settings.max_transaction_amount} "
            "per transaction",
            credits=credits,
            limit=ctx.settings.max_transaction_amount,
        )


def check_balance_cap(ctx: LedgerContext, account: Account, credits: int) -> None:
    if account.total + credits > ctx.settings.max_credit_balance:
        raise CreditLimitExceeded(
            f"the balance would be {account.total + credits}, above the limit of "
            f"{ctx.settings.max_credit_balance}",
            balance=account.total,
            credits=credits,
            limit=ctx.settings.max_credit_balance,
        )


async def check_daily(ctx: LedgerContext, user_id: str, today: int | None = None) -> None:
    """MAX_DAILY_TRANSACTIONS: charges, captures and transfers sent (purchases are checked
    when they start, since a paid purchase is never refused)."""
    if today is None:
        today = (await journal_store.transactions_today(ctx.conn, [user_id])).get(user_id, 0)
    limit = ctx.settings.max_daily_transactions
    if today >= limit:
        raise TransactionLimitExceeded(
            f"{today} transactions today reach the daily limit of {limit}",
            today=today,
            limit=limit,
        )


def check_funds(account: Account | None, credits: int) -> Account:
    available = account.available if account else 0
    if account is None or available < credits:
        raise InsufficientCredits(
            f"{credits} credits requested, {available} available",
            available=available,
            requested=credits,
        )
    return account


async def lock_one(ctx: LedgerContext, user_id: str, create: bool = False) -> Account | None:
    if create:
        await account_store.ensure_accounts(ctx.conn, [user_id])
    return (await account_store.lock_accounts(ctx.conn, [user_id])).get(user_id)


async def write(
    ctx: LedgerContext,
    drafts: list[TransactionDraft],
    deltas: dict[int, tuple[int, int]],
) -> dict[int, tuple[int, int]]:
    """Move user balances by `deltas` and write the postings with the balances after."""
    after = await account_store.adjust_accounts(ctx.conn, deltas)
    await journal_store.insert_postings(ctx.conn, drafts, after)
    return after


@dataclass(frozen=True)
class Debtors:
    """The locked accounts of a set-based round's users, and how many counted
    transactions each has made today: what every debit of the round is checked against."""

    accounts: dict[str, Account]
    today: dict[str, int]

    async def check(self, ctx: LedgerContext, user_id: str, credits: int) -> Account:
        """The user's account if a debit of `credits` passes the amount limit, the funds
        and the daily limit; the PaymentError that refuses it otherwise."""
        check_amount(ctx, credits)
        account = check_funds(self.accounts.get(user_id), credits)
        await check_daily(ctx, user_id, self.today.get(user_id, 0))
        return account


async def lock_debtors(ctx: LedgerContext, users: Sequence[str]) -> Debtors:
    """Lock the accounts of a round's users (each at most once) and count their
    transactions today: the start of every set-based debit (charges, holds)."""
    if len(set(users)) != len(users):
        raise ValueError("a set-based round takes each user at most once")
    accounts = await account_store.lock_accounts(ctx.conn, users)
    return Debtors(accounts, await journal_store.transactions_today(ctx.conn, users))


async def spend(
    ctx: LedgerContext, debits: Sequence[tuple[TransactionDraft, int]], to_held: bool = False
) -> tuple[dict[int, tuple[int, int]], dict[uuid.UUID, list[Allocation]]]:
    """Write (draft, account id) debits of distinct accounts, set-based: the transactions,
    their credits taken from open batches earliest expiry first, the balances (moved to
    held with `to_held`, a hold) and the postings. Returns the balances after, by account,
    and the batches each transaction took from, by transaction id."""
    drafts = [draft for draft, _ in debits]
    await journal_store.insert_transactions(ctx.conn, drafts)
    taken = await batch_store.take_from_batches(
        ctx.conn, [(d.id, account, d.credits) for d, account in debits]
    )
    by_tx: dict[uuid.UUID, list[Allocation]] = {}
    for allocation in taken:
        by_tx.setdefault(allocation.transaction_id, []).append(allocation)
    deltas = {account: (-d.credits, d.credits if to_held else 0) for d, account in debits}
    return await write(ctx, drafts, deltas), by_tx


def take_in_order(
    transaction_id: uuid.UUID, batches: Sequence[batch_store.OpenBatch], credits: int
) -> list[Allocation]:
    """Up to `credits` from `batches` in the order given, as debits of `transaction_id`
    (a freeze or a take-back names the batches it may take from; spending does not)."""
    taken: list[Allocation] = []
    left = credits
    for batch in batches:
        n = min(batch.remaining, left)
        if n:
            taken.append(Allocation(transaction_id, batch.id, -n, batch.expires_at, batch.source))
            left -= n
    return taken


def applied(command: CommandEnvelope, result: dict[str, Any], events: list[Any]) -> Outcome:
    return Outcome(command=command, status=APPLIED, result=result, events=events)


def balance(after: tuple[int, int]) -> dict[str, int]:
    return {"available": after[0], "held": after[1], "total": after[0] + after[1]}
