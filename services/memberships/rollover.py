"""Rollover policies: what happens to a period's unused membership credits.

A policy is decided when the *next* period's grant happens (expiry is a ledger
transaction like any other), so the history shows, at each renewal, what was
carried and what expired. Pure functions here; the ledger work is in `handlers`.

- `none`: the period's credits expire when the next period is granted.
- `capped:N`: up to N unused credits of the period's own grant carry into the next
  period (a new batch ending with it); the rest expire. Carried credits are not
  carried again: at the following renewal they expire.
- `one_cycle`: the period's credits live through the next period too, then expire.

Every membership batch also has an `expires_at`, for a membership that is not renewed
(canceled, unpaid): the end of the last period it may live in, plus
MEMBERSHIP_RENEWAL_GRACE_HOURS, since Stripe collects a renewal up to a few hours after
the period starts and the credits must still be there to roll over.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

NONE, ONE_CYCLE, CAPPED = "none", "one_cycle", "capped"


@dataclass(frozen=True)
class Policy:
    kind: str
    cap: int = 0

    @classmethod
    def parse(cls, text: str) -> "Policy":
        if text in (NONE, ONE_CYCLE):
            return cls(text)
        kind, _, cap = text.partition(":")
        if kind != CAPPED or not cap.isdigit() or int(cap) <= 0:
            raise ValueError(f"unknown rollover policy {text!r}")
        return cls(CAPPED, int(cap))


def batch_expiry(policy: Policy, period_start: datetime, period_end: datetime,
                 grace: timedelta) -> datetime:
    """When a period's granted batch expires if no renewal decides earlier."""
    lives_until = period_end
    if policy.kind == ONE_CYCLE:
        lives_until = period_end + (period_end - period_start)
    return lives_until + grace


@dataclass(frozen=True)
class OpenCredits:
    """An open batch of an earlier period, as the renewal sees it."""

    batch_id: uuid.UUID
    remaining: int
    previous_grant: bool
    """True for the batch the immediately previous period's grant created."""


@dataclass(frozen=True)
class RolloverDecision:
    carry: dict[uuid.UUID, int]
    """Credits to move from each batch into the new period's rollover batch."""
    expire: dict[uuid.UUID, int]
    """Credits to expire from each batch."""

    @property
    def carried(self) -> int:
        return sum(self.carry.values())

    @property
    def expired(self) -> int:
        return sum(self.expire.values())


def decide(policy: Policy, batches: list[OpenCredits]) -> RolloverDecision:
    """Split the open credits of earlier periods into kept, carried and expired.

    Only the previous period's own grant can be kept (`one_cycle`) or carried
    (`capped`); older batches and earlier carry-overs always expire here.
    """
    carry: dict[uuid.UUID, int] = {}
    expire: dict[uuid.UUID, int] = {}
    room = policy.cap
    for batch in batches:
        if batch.remaining <= 0:
            continue
        if batch.previous_grant and policy.kind == ONE_CYCLE:
            continue
        if batch.previous_grant and policy.kind == CAPPED and room > 0:
            moved = min(room, batch.remaining)
            room -= moved
            carry[batch.batch_id] = moved
            if batch.remaining > moved:
                expire[batch.batch_id] = batch.remaining - moved
            continue
        expire[batch.batch_id] = batch.remaining
    return RolloverDecision(carry, expire)
