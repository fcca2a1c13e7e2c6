"""The charges each phase runs and the grants that fund them before any clock starts.

Every phase gets its own users with the same shape of data (three batches per user
with different expiries), so the phases compare like with like.
"""

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.commands import (
    CaptureCredits,
    CapturePayload,
    ChargeCredits,
    ChargePayload,
    CommandEnvelope,
    GrantCredits,
    GrantPayload,
    HoldCredits,
    HoldPayload,
    ReleaseCredits,
    ReleasePayload,
)


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


def plan_grants(phase: str, count: int, users: int, now: datetime) -> list[GrantCredits]:
    """Goodwill grants round-robin over users that have no account yet: each creates
    one, then a batch, as a bulk grant or a wave of renewals would."""
    return [
        GrantCredits(
            id=uuid.uuid4(), user_id=user_name(phase, i % users), source="bench-grants",
            payload=GrantPayload(
                credits=1 + i % 10, reason="bench grant", expires_at=now + timedelta(days=90)
            ),
        )
        for i in range(count)
    ]


# The fault suite's mix of commands by weight (devtools/faults/load.py), without its
# refunds: a refund names the transaction id of an applied charge, which only the
# ledger knows, so it cannot be planned before the clock starts.
MIX = (("grant", 22), ("charge", 40), ("hold", 12), ("capture", 10), ("release", 3))
HOLD_CREDITS = 4


def plan_mix(
    phase: str, count: int, users: int, now: datetime
) -> tuple[list[CommandEnvelope], dict[int, int]]:
    """`count` commands round-robin over users in MIX's proportions, and the credits
    each user index needs up front (charges and holds, before any grant lands).

    Captures and releases target the user's oldest open hold, by reference; with none
    open, the slot becomes a hold. The draw is seeded: every run plans the same mix.
    """
    rng = random.Random(14)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    open_holds: dict[int, list[str]] = {}
    need: dict[int, int] = {}
    commands: list[CommandEnvelope] = []
    for i in range(count):
        index = i % users
        user = user_name(phase, index)
        kind = rng.choices(kinds, weights)[0]
        holds = open_holds.setdefault(index, [])
        if kind in ("capture", "release") and not holds:
            kind = "hold"
        reference = f"booking-{phase}-{i}"
        command: CommandEnvelope
        if kind == "grant":
            command = GrantCredits(
                user_id=user, source="bench-mix",
                payload=GrantPayload(credits=5, reason="bench mix", expires_at=now + timedelta(days=90)),
            )
        elif kind == "charge":
            credits = charge_credits(i)
            need[index] = need.get(index, 0) + credits
            command = ChargeCredits(
                user_id=user, source="booking-service",
                payload=ChargePayload(credits=credits, reference=reference),
            )
        elif kind == "hold":
            need[index] = need.get(index, 0) + HOLD_CREDITS
            holds.append(reference)
            command = HoldCredits(
                user_id=user, source="booking-service",
                payload=HoldPayload(credits=HOLD_CREDITS, reference=reference),
            )
        elif kind == "capture":
            command = CaptureCredits(
                user_id=user, source="booking-service",
                payload=CapturePayload(reference=holds.pop(0), credits=HOLD_CREDITS - 1),
            )
        else:
            command = ReleaseCredits(
                user_id=user, source="booking-service",
                payload=ReleasePayload(reference=holds.pop(0)),
            )
        commands.append(command)
    return commands, need
