"""The charges each phase runs and the grants that fund them before any clock starts.

Every phase gets its own users with the same shape of data (three batches per user
with different expiries), so the phases compare like with like.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.commands import ChargeCredits, ChargePayload, GrantCredits, GrantPayload


@dataclass(frozen=True)
class Charge:
    """One booking charge of the workload; every phase's code consumes the same shape."""

    id: uuid.UUID
    user_id: str
    credits: int
    reference: str

    def command(self) -> ChargeCredits:
        return ChargeCredits(
            id=self.id,
            user_id=self.user_id,
            source="booking-service",
            payload=ChargePayload(credits=self.credits, reference=self.reference),
        )


@dataclass(frozen=True)
class Grant:
    """One funding grant: what a `GrantCredits` command with these fields applies."""

    command_id: uuid.UUID
    user_id: str
    credits: int
    expires_at: datetime
    reason: str

    def command(self) -> GrantCredits:
        return GrantCredits(
            id=self.command_id,
            user_id=self.user_id,
            source="bench-funding",
            payload=GrantPayload(credits=self.credits, reason=self.reason, expires_at=self.expires_at),
        )


def user_name(phase: str, index: int) -> str:
    return f"bench-{phase}-{index:06d}"


def charge_credits(index: int) -> int:
    """1..5 credits, varied so running sums land inside and across batches."""
    return 1 + (index * 7) % 5


def plan_charges(phase: str, count: int, users: int) -> list[Charge]:
    """Round-robin over users: consecutive charges hit different users, as real traffic."""
    return [
        Charge(uuid.uuid4(), user_name(phase, i % users), charge_credits(i), f"booking-{phase}-{i}")
        for i in range(count)
    ]


def credits_needed(count: int, users: int) -> dict[int, int]:
    """Credits each user index spends when `count` charges are planned over `users`."""
    need: dict[int, int] = {}
    for i in range(count):
        need[i % users] = need.get(i % users, 0) + charge_credits(i)
    return need


def funding_rounds(phase: str, need: dict[int, int], now: datetime) -> list[list[Grant]]:
    """Three grants per user, as three rounds (each user at most once per round).

    The longest-lived batch is granted first and the shortest-lived second, so the
    spend order (earliest expiry first) differs from the insertion order: charges
    really exercise the FIFO-by-expiry rule, and a user's first ~30 % of spending
    drains one batch, then crosses into the next.
    """
    rounds: list[list[Grant]] = [[], [], []]
    for index, total in sorted(need.items()):
        short = max(1, total * 3 // 10)
        middle = max(1, total * 3 // 10)
        long = max(1, total - short - middle) + 5  # slack: no charge fails for funds
        user = user_name(phase, index)
        plan = ((long, 365), (short, 30), (middle, 90))
        for round_, (credits, days) in zip(rounds, plan, strict=True):
            round_.append(
                Grant(uuid.uuid4(), user, credits, now + timedelta(days=days), f"bench funding {days}d")
            )
    return rounds
