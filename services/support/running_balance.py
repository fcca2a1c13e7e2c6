"""The running balance of the balance explanation, from the postings' stored balances.

Each posting on a user's account stores the account's balances after the write that
made it. A write of one transaction stores exactly the balance after that transaction.
A write of several transactions of one command on one account (a partial capture: the
charge and the release of the rest) stores the balance after the last one on all of
them, so the earlier ones would show a balance they never had.

Reading newest first, an entry that shows the same stored balances as the entry just
newer than it is such an earlier one (or a transaction that changed nothing, for which
the rule below gives the same value): its balance after is the newer entry's balance
after minus the newer entry's change. A transaction with no posting on the account
(none do today) is derived the same way. Every other entry keeps its stored balance.
"""

from collections.abc import Sequence
from dataclasses import dataclass

Pair = tuple[int, int]


@dataclass(frozen=True)
class Step:
    """One transaction as this account saw it: stored balances after (None when it has
    no posting on the account) and its change of (available, held)."""

    stored: Pair | None
    change: Pair


def balances_after(steps: Sequence[Step], newest: Pair | None, skip: int = 0) -> list[Pair]:
    """(available, held) after each step, newest first.

    `newest`: the balance after the first step when it stored none (the account's
    balance now, on the first page). `skip`: leading steps that only carry the chain
    (the transactions just above a later page), left out of the answer.
    """
    found: list[Pair] = []
    newer: tuple[Step, Pair] | None = None
    for step in steps:
        if newer is not None and (step.stored is None or step.stored == newer[0].stored):
            before, change = newer[1], newer[0].change
            after = (before[0] - change[0], before[1] - change[1])
        elif step.stored is not None:
            after = step.stored
        else:
            after = newest or (0, 0)
        found.append(after)
        newer = (step, after)
    return found[skip:]
