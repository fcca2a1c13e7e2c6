"""The ledger's rules, driven through `apply_commands` on the real database (no fakes).

Each test reads like a promise of docs/architecture.md, "The ledger", and ends with `reconcile`
over the whole database, which every test shares: a test that writes raw SQL rolls it back.
"""

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.commands import (
    CaptureCredits,
    CapturePayload,
    ChargeCredits,
    ChargePayload,
    CommandEnvelope,
    ExpireCredits,
    ExpirePayload,
    GrantCredits,
    GrantPayload,
    HoldCredits,
    HoldPayload,
    RefundCredits,
    RefundPayload,
    ReleaseCredits,
    ReleasePayload,
    TransferCredits,
    TransferPayload,
)
from services.bootstrap import command_registry
from services.ledger import queries
from services.ledger.apply import BatchReport, apply_commands
from services.ledger.context import Outcome
from services.ledger.invariant_queries import reconcile
from services.settings import Settings

REGISTRY = command_registry()  # built once, as the ledger worker does at start

# --- commands -----------------------------------------------------------------------


def grant(user: str, credits: int, expires_at: datetime | None = None) -> GrantCredits:
    return GrantCredits(
        user_id=user, payload=GrantPayload(credits=credits, reason="test", expires_at=expires_at)
    )


def charge(user: str, credits: int, reference: str = "booking-1") -> ChargeCredits:
    return ChargeCredits(user_id=user, payload=ChargePayload(credits=credits, reference=reference))


def hold(user: str, credits: int, reference: str) -> HoldCredits:
    return HoldCredits(user_id=user, payload=HoldPayload(credits=credits, reference=reference))


def capture(
    user: str,
    *,
    reference: str | None = None,
    hold_id: str | uuid.UUID | None = None,
    credits: int | None = None,
) -> CaptureCredits:
    return CaptureCredits(
        user_id=user,
        payload=CapturePayload(
            reference=reference, hold_id=uuid.UUID(str(hold_id)) if hold_id else None, credits=credits
        ),
    )


def release(
    user: str, *, reference: str | None = None, hold_id: str | uuid.UUID | None = None
) -> ReleaseCredits:
    return ReleaseCredits(
        user_id=user,
        payload=ReleasePayload(
            reference=reference, hold_id=uuid.UUID(str(hold_id)) if hold_id else None
        ),
    )


def refund(user: str, transaction_id: str | uuid.UUID, credits: int | None = None) -> RefundCredits:
    return RefundCredits(
        user_id=user,
        payload=RefundPayload(
            transaction_id=uuid.UUID(str(transaction_id)), credits=credits, reason="test"
        ),
    )


def transfer(user: str, to_user: str, credits: int) -> TransferCredits:
    return TransferCredits(
        user_id=user, payload=TransferPayload(to_user_id=to_user, credits=credits, reason="test")
    )


def expire(user: str, batch_id: str | uuid.UUID) -> ExpireCredits:
    return ExpireCredits(user_id=user, payload=ExpirePayload(batch_id=uuid.UUID(str(batch_id))))


def days(n: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=n)


# --- applying and looking -------------------------------------------------------------


async def apply(engine: AsyncEngine, settings: Settings, *commands: CommandEnvelope) -> BatchReport:
    return await apply_commands(engine, settings, list(commands), REGISTRY)


async def one(engine: AsyncEngine, settings: Settings, command: CommandEnvelope) -> Outcome:
    report = await apply(engine, settings, command)
    assert len(report.outcomes) == 1, report
    return report.outcomes[0]


async def ok(engine: AsyncEngine, settings: Settings, command: CommandEnvelope) -> dict[str, Any]:
    outcome = await one(engine, settings, command)
    assert outcome.status == "applied", outcome.result
    return outcome.result


async def refused(engine: AsyncEngine, settings: Settings, command: CommandEnvelope) -> str:
    outcome = await one(engine, settings, command)
    assert outcome.status == "rejected", outcome.result
    assert outcome.result["code"] == outcome.error_code
    return outcome.error_code or ""


async def balance(engine: AsyncEngine, user: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        found = await queries.balance(conn, user)
    assert found["total"] == found["available"] + found["held"]
    return found["available"], found["held"]


async def batches(engine: AsyncEngine, user: str) -> dict[str, dict[str, Any]]:
    """Every batch of the user (open or not) by id."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, source, amount, remaining, status, expires_at, source_ref "
                    "FROM credit_batches WHERE user_id = :u"
                ),
                {"u": user},
            )
        ).mappings().all()
    return {str(r["id"]): dict(r) for r in rows}


async def remaining(engine: AsyncEngine, user: str) -> dict[str, int]:
    return {batch_id: b["remaining"] for batch_id, b in (await batches(engine, user)).items()}


async def transactions(engine: AsyncEngine, user: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, type, credits, related_transaction_id, hold_id FROM ledger_transactions "
                "WHERE user_id = :u ORDER BY seq"
            ),
            {"u": user},
        )
        return [dict(r) for r in rows.mappings()]


async def footprint(engine: AsyncEngine, user: str) -> tuple[Any, ...]:
    """Everything a command could have changed for a user."""
    async with engine.connect() as conn:
        counts = (
            await conn.execute(
                text(
                    """
                    SELECT (SELECT count(*) FROM ledger_transactions WHERE user_id = :u),
                           (SELECT count(*) FROM postings p JOIN accounts a ON a.id = p.account_id
                             WHERE a.user_id = :u),
                           (SELECT count(*) FROM processed_commands WHERE user_id = :u),
                           (SELECT count(*) FROM outbox WHERE key = :u),
                           (SELECT count(*) FROM holds WHERE user_id = :u)
                    """
                ),
                {"u": user},
            )
        ).one()
    return (tuple(counts), await balance(engine, user), await remaining(engine, user))


async def assert_reconciled(engine: AsyncEngine) -> None:
    assert [str(d) for d in await reconcile(engine)] == []


def spent(result: dict[str, Any]) -> list[tuple[str, int]]:
    return [(b["batchId"], b["credits"]) for b in result["batches"]]


def near(actual: datetime, expected: datetime, seconds: float = 30) -> bool:
    return abs((actual - expected).total_seconds()) < seconds


# --- spending order -------------------------------------------------------------------


async def test_charge_takes_earliest_expiring_batch_first(engine, settings, user_id):
    late = await ok(engine, settings, grant(user_id, 10, days(30)))
    early = await ok(engine, settings, grant(user_id, 10, days(5)))
    mid = await ok(engine, settings, grant(user_id, 10, days(10)))

    first = await ok(engine, settings, charge(user_id, 15))
    assert spent(first) == [(early["batchId"], 10), (mid["batchId"], 5)]
    assert first["balance"] == {"available": 15, "held": 0, "total": 15}
    assert await remaining(engine, user_id) == {
        early["batchId"]: 0, mid["batchId"]: 5, late["batchId"]: 10
    }

    second = await ok(engine, settings, charge(user_id, 7))
    assert spent(second) == [(mid["batchId"], 5), (late["batchId"], 2)]
    assert await remaining(engine, user_id) == {
        early["batchId"]: 0, mid["batchId"]: 0, late["batchId"]: 8
    }
    assert await balance(engine, user_id) == (8, 0)
    await assert_reconciled(engine)


async def test_ties_in_expiry_spend_oldest_first(engine, settings, user_id):
    expiry = days(20)
    oldest = await ok(engine, settings, grant(user_id, 4, expiry))
    middle = await ok(engine, settings, grant(user_id, 4, expiry))
    newest = await ok(engine, settings, grant(user_id, 4, expiry))

    taken = await ok(engine, settings, charge(user_id, 6))
    assert spent(taken) == [(oldest["batchId"], 4), (middle["batchId"], 2)]
    assert await remaining(engine, user_id) == {
        oldest["batchId"]: 0, middle["batchId"]: 2, newest["batchId"]: 4
    }
    taken = await ok(engine, settings, charge(user_id, 5))
    assert spent(taken) == [(middle["batchId"], 2), (newest["batchId"], 3)]
    await assert_reconciled(engine)


async def test_grants_in_one_batch_spend_in_arrival_order(engine, settings, user_id):
    """With the default expiry, FIFO holds even for grants the worker applied in one batch."""
    grants = [grant(user_id, 2) for _ in range(5)]
    report = await apply(engine, settings, *grants)
    results = {o.command.id: o.result for o in report.outcomes}
    granted = [results[g.id]["batchId"] for g in grants]
    assert len({results[g.id]["expiresAt"] for g in grants}) == 1  # one batch, one default expiry
    taken = await ok(engine, settings, charge(user_id, 7))
    assert spent(taken) == [(granted[0], 2), (granted[1], 2), (granted[2], 2), (granted[3], 1)]
    assert await remaining(engine, user_id) == dict(zip(granted, [0, 0, 0, 1, 2], strict=True))
    await assert_reconciled(engine)


async def test_a_charge_spanning_tied_batches_reports_them_in_spend_order(engine, settings, user_id):
    """Six batches with one expiry, granted one by one; a charge drains five of them."""
    expiry = days(40)
    granted = [(await ok(engine, settings, grant(user_id, 2, expiry)))["batchId"] for _ in range(6)]
    taken = await ok(engine, settings, charge(user_id, 9))
    assert spent(taken) == [(b, 2) for b in granted[:4]] + [(granted[4], 1)]
    await assert_reconciled(engine)


async def test_charges_of_many_users_in_one_batch_each_follow_spend_order(engine, settings, user_id):
    """The set-based path: one statement spends for every user, each in their own order."""
    users = [f"{user_id}-{n}" for n in range(12)]
    expiry, later = days(15), days(25)
    granted: dict[str, list[str]] = {u: [] for u in users}
    for _ in range(3):  # three tied batches per user, granted in three transactions
        report = await apply(engine, settings, *(grant(u, 3, expiry) for u in users))
        for outcome in report.outcomes:
            granted[outcome.command.user_id].append(outcome.result["batchId"])
    report = await apply(engine, settings, *(grant(u, 5, later) for u in users))
    last = {o.command.user_id: o.result["batchId"] for o in report.outcomes}

    from_last = {u: 1 + n % 4 for n, u in enumerate(users)}
    report = await apply(engine, settings, *(charge(u, 3 * 3 + from_last[u]) for u in users))
    assert [o.status for o in report.outcomes] == ["applied"] * len(users)
    for outcome in report.outcomes:
        u = outcome.command.user_id
        expected = [(b, 3) for b in granted[u]] + [(last[u], from_last[u])]
        assert spent(outcome.result) == expected, (u, spent(outcome.result), expected)
        assert outcome.result["balance"]["available"] == 5 - from_last[u]
        charged = next(e for e in outcome.events if e.type == "credits.charged")
        assert [(b["batchId"], b["credits"]) for b in charged.payload.batches] == expected
    await assert_reconciled(engine)


async def _statements(
    engine: AsyncEngine, settings: Settings, commands: list[CommandEnvelope]
) -> tuple[BatchReport, int]:
    """Apply one batch; how many SQL statements it sent (every cursor execute counted)."""
    sent = 0

    def count(*_: Any) -> None:
        nonlocal sent
        sent += 1

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        report = await apply(engine, settings, *commands)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    return report, sent


async def test_grants_of_many_users_in_one_batch_are_set_based(engine, settings, user_id):
    """A round of goodwill grants costs the statements of one grant, whatever its size
    (a bulk grant or a wave of renewals must not queue for hours); a grant refused for
    its expiry creates no account, one over the balance cap changes nothing, and the
    others are applied."""
    limited = settings.model_copy(update={"max_credit_balance": 100})
    capped = f"{user_id}-capped"
    await ok(engine, limited, grant(capped, 99))  # also warms what a worker reads once
    few = [grant(f"{user_id}-few-{n}", 3) for n in range(3)]
    _, few_statements = await _statements(engine, limited, list(few))
    many = [grant(f"{user_id}-many-{n}", 1 + n % 7, days(30 + n)) for n in range(60)]
    past = grant(f"{user_id}-past", 5, datetime.now(UTC) - timedelta(seconds=1))
    over = grant(capped, 2)
    report, many_statements = await _statements(engine, limited, [*many, past, over])
    assert many_statements == few_statements, (few_statements, many_statements)
    by_id = {o.command.id: o for o in report.outcomes}
    assert [by_id[c.id].status for c in many] == ["applied"] * len(many)
    for command in many:
        result = by_id[command.id].result
        assert result["credits"] == command.payload.credits
        assert result["balance"]["available"] == command.payload.credits
        assert result["expiresAt"] == command.payload.expires_at.isoformat()
    assert (by_id[past.id].status, by_id[past.id].error_code) == ("rejected", "PAY007")
    assert (by_id[over.id].status, by_id[over.id].error_code) == ("rejected", "PAY006")
    async with engine.connect() as conn:
        created = await conn.scalar(
            text("SELECT count(*) FROM accounts WHERE user_id = :u"), {"u": past.user_id}
        )
        capped_balance = await conn.scalar(
            text("SELECT available FROM accounts WHERE user_id = :u"), {"u": capped}
        )
    assert created == 0
    assert capped_balance == 99
    await assert_reconciled(engine)


async def test_holds_of_many_users_in_one_batch_are_set_based(engine, settings, user_id):
    """A round of holds costs the statements of one hold, whatever its size; each hold
    takes its own user's batches earliest expiry first; a second open hold for the same
    booking (PAY014) and one short of credits (PAY001) are refused and change nothing."""
    users = [f"{user_id}-h{n}" for n in range(40)]
    soon, later = days(10), days(50)
    await apply(engine, settings, *(grant(u, 3, later) for u in users))
    report = await apply(engine, settings, *(grant(u, 2, soon) for u in users))
    first_batch = {o.command.user_id: o.result["batchId"] for o in report.outcomes}
    few = [hold(u, 1, "booking-warm") for u in users[:3]]
    _, few_statements = await _statements(engine, settings, list(few))
    twice = hold(users[0], 1, "booking-warm")  # its hold from `few` is still open
    poor = hold(users[1], 99, "booking-poor")
    many = [hold(u, 3, f"booking-{n}") for n, u in enumerate(users[3:])]
    report, many_statements = await _statements(engine, settings, [twice, poor, *many])
    assert many_statements == few_statements, (few_statements, many_statements)
    by_id = {o.command.id: o for o in report.outcomes}
    assert (by_id[twice.id].status, by_id[twice.id].error_code) == ("rejected", "PAY014")
    assert (by_id[poor.id].status, by_id[poor.id].error_code) == ("rejected", "PAY001")
    for command in many:
        outcome = by_id[command.id]
        assert outcome.status == "applied", outcome.result
        assert outcome.result["balance"] == {"available": 2, "held": 3, "total": 5}
        held_event = next(e for e in outcome.events if e.type == "credits.held")
        taken = [(b["batchId"], b["credits"]) for b in held_event.payload.batches]
        assert taken[0] == (first_batch[command.user_id], 2)  # the earliest expiry first
        assert sum(n for _, n in taken) == 3
    for user in users[:2]:  # the refused ones: only `few`'s hold of 1 is held
        assert await balance(engine, user) == (4, 1)
    await assert_reconciled(engine)


# --- limits and refusals --------------------------------------------------------------


async def test_insufficient_credits_is_pay001_and_changes_nothing(engine, settings, user_id):
    await ok(engine, settings, grant(user_id, 10))
    before = await footprint(engine, user_id)

    outcome = await one(engine, settings, charge(user_id, 11))
    assert (outcome.status, outcome.error_code) == ("rejected", "PAY001")
    assert outcome.result["details"] == {"available": 10, "requested": 11}
    assert [e.type for e in outcome.events] == ["credits.charge.rejected"]
    assert await refused(engine, settings, hold(user_id, 11, "booking-x")) == "PAY001"
    assert await refused(engine, settings, transfer(user_id, f"{user_id}-to", 11)) == "PAY001"

    after = await footprint(engine, user_id)
    counts_before, counts_after = before[0], after[0]
    # Only the stored rejections and their events were added: no transaction, posting, hold.
    assert counts_after[:2] == counts_before[:2] and counts_after[4] == counts_before[4]
    assert counts_after[2] == counts_before[2] + 3 and counts_after[3] == counts_before[3] + 3
    assert after[1:] == before[1:] == ((10, 0), before[2])
    assert [t["type"] for t in await transactions(engine, user_id)] == ["ADJUSTMENT"]
    # The refused transfer did not leave an account behind for its recipient.
    async with engine.connect() as conn:
        recipient = await conn.scalar(
            text("SELECT count(*) FROM accounts WHERE user_id = :u"), {"u": f"{user_id}-to"}
        )
    assert recipient == 0
    # A user with no account at all is refused the same way.
    assert await refused(engine, settings, charge(f"{user_id}-new", 1)) == "PAY001"
    await assert_reconciled(engine)


async def test_grant_over_max_credit_balance_is_pay006(engine, settings, user_id):
    limited = settings.model_copy(update={"max_credit_balance": 100})
    await ok(engine, limited, grant(user_id, 60))
    outcome = await one(engine, limited, grant(user_id, 41))
    assert outcome.error_code == "PAY006"
    assert outcome.result["details"] == {"balance": 60, "credits": 41, "limit": 100}
    assert await balance(engine, user_id) == (60, 0)

    await ok(engine, limited, hold(user_id, 30, "booking-cap"))
    # Held credits still count towards the limit.
    assert await refused(engine, limited, grant(user_id, 41)) == "PAY006"
    assert (await ok(engine, limited, grant(user_id, 40)))["balance"] == {
        "available": 70, "held": 30, "total": 100
    }
    assert await refused(engine, limited, grant(user_id, 1)) == "PAY006"

    # A transfer into a full account is refused too, and the sender keeps the credits.
    sender = f"{user_id}-s"
    await ok(engine, limited, grant(sender, 5))
    assert await refused(engine, limited, transfer(sender, user_id, 1)) == "PAY006"
    assert await balance(engine, sender) == (5, 0)
    assert await balance(engine, user_id) == (70, 30)
    await assert_reconciled(engine)


async def test_command_over_max_transaction_amount_is_pay016(engine, settings, user_id):
    limited = settings.model_copy(update={"max_transaction_amount": 50})
    assert await refused(engine, limited, grant(user_id, 51)) == "PAY016"
    await ok(engine, limited, grant(user_id, 50))
    await ok(engine, limited, grant(user_id, 50))
    # The amount limit is checked before the funds (100 would be enough).
    outcome = await one(engine, limited, charge(user_id, 51))
    assert outcome.error_code == "PAY016"
    assert outcome.result["details"] == {"credits": 51, "limit": 50}
    assert await refused(engine, limited, hold(user_id, 51, "booking-big")) == "PAY016"
    assert await refused(engine, limited, transfer(user_id, f"{user_id}-to", 51)) == "PAY016"
    assert await balance(engine, user_id) == (100, 0)
    assert (await ok(engine, limited, charge(user_id, 50)))["balance"]["available"] == 50
    await assert_reconciled(engine)


async def test_grant_with_an_expiry_in_the_past_or_without_offset_is_pay007(engine, settings, user_id):
    assert await refused(engine, settings, grant(user_id, 5, days(-1))) == "PAY007"
    # A wire expiry without an offset ("2030-01-01T00:00:00") is refused by the contract
    # itself (the worker dead-letters it with the reason, the ingress answers PAY007).
    with pytest.raises(ValidationError, match="timezone"):
        GrantCredits.model_validate_json(
            grant(user_id, 5).model_dump_json().replace(
                '"expiresAt":null', '"expiresAt":"2030-01-01T00:00:00"'
            )
        )
    assert await balance(engine, user_id) == (0, 0)
    await assert_reconciled(engine)


async def test_rejected_command_does_not_undo_others_in_its_batch(engine, settings, user_id):
    rich, poor, stranger = user_id, f"{user_id}-poor", f"{user_id}-stranger"
    commands = [
        grant(rich, 100),
        charge(poor, 5),  # nothing yet: PAY001
        charge(rich, 30),
        grant(poor, 20),
        hold(rich, 200, "booking-big"),  # PAY001
        charge(poor, 5),
        hold(rich, 10, "booking-ok"),
        capture(stranger, reference="nope"),  # PAY008
        charge(rich, 1_000),  # PAY001, in the set-based path with poor's charge
        charge(poor, 3),
    ]
    report = await apply(engine, settings, *commands)
    outcomes = {o.command.id: o for o in report.outcomes}
    assert len(outcomes) == len(commands)
    expected = ["applied", "PAY001", "applied", "applied", "PAY001", "applied", "applied",
                "PAY008", "PAY001", "applied"]
    got = [outcomes[c.id].error_code or outcomes[c.id].status for c in commands]
    assert got == expected
    assert await balance(engine, rich) == (60, 10)
    assert await balance(engine, poor) == (12, 0)
    assert [t["type"] for t in await transactions(engine, rich)] == [
        "ADJUSTMENT", "CREDIT_USAGE", "CREDIT_HOLD"
    ]
    async with engine.connect() as conn:
        stored = dict(
            (
                await conn.execute(
                    text(
                        "SELECT command_id, coalesce(error_code, status) FROM processed_commands "
                        "WHERE command_id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": [c.id for c in commands]},
                )
            ).all()
        )
    assert [stored[c.id] for c in commands] == expected
    await assert_reconciled(engine)


async def test_redelivered_command_changes_nothing(engine, settings, user_id):
    funding, spend = grant(user_id, 20), charge(user_id, 4)
    await ok(engine, settings, funding)
    first = await ok(engine, settings, spend)
    before = await footprint(engine, user_id)

    again = await apply(engine, settings, spend)
    assert (again.outcomes, again.duplicates) == ([], 1)
    again = await apply(engine, settings, funding, spend)
    assert (again.outcomes, again.duplicates) == ([], 2)
    assert await footprint(engine, user_id) == before
    async with engine.connect() as conn:
        stored = await queries.command_status(conn, spend.id)
    assert stored is not None and stored["result"] == first

    # Twice in one batch: applied once.
    twice = charge(user_id, 3)
    report = await apply(engine, settings, twice, twice)
    assert report.duplicates == 1 and [o.status for o in report.outcomes] == ["applied"]
    assert await balance(engine, user_id) == (13, 0)

    # A stored rejection is final, even once the credits would be there.
    greedy = charge(user_id, 50)
    assert await refused(engine, settings, greedy) == "PAY001"
    await ok(engine, settings, grant(user_id, 50))
    report = await apply(engine, settings, greedy)
    assert (report.outcomes, report.duplicates) == ([], 1)
    assert await balance(engine, user_id) == (63, 0)
    await assert_reconciled(engine)


# --- holds ------------------------------------------------------------------------------


async def test_hold_then_full_capture_charges_the_held_credits(engine, settings, user_id):
    granted = await ok(engine, settings, grant(user_id, 50))
    held = await ok(engine, settings, hold(user_id, 20, "booking-7"))
    assert held["balance"] == {"available": 30, "held": 20, "total": 50}
    async with engine.connect() as conn:
        shown = await queries.balance(conn, user_id)
    assert (shown["available"], shown["held"], shown["total"]) == (30, 20, 50)
    assert [b["remaining"] for b in shown["batches"]] == [30]

    captured = await ok(engine, settings, capture(user_id, reference="booking-7"))
    assert (captured["credits"], captured["released"], captured["holdId"]) == (20, 0, held["holdId"])
    assert captured["balance"] == {"available": 30, "held": 0, "total": 30}
    assert await remaining(engine, user_id) == {granted["batchId"]: 30}
    usage = [t for t in await transactions(engine, user_id) if t["type"] == "CREDIT_USAGE"]
    assert len(usage) == 1 and str(usage[0]["related_transaction_id"]) == held["transactionId"]
    assert usage[0]["credits"] == 20
    # The hold is settled: neither a second capture nor a release applies.
    assert await refused(engine, settings, capture(user_id, hold_id=held["holdId"])) == "PAY014"
    assert await refused(engine, settings, release(user_id, reference="booking-7")) == "PAY014"
    assert await balance(engine, user_id) == (30, 0)
    await assert_reconciled(engine)


async def test_partial_capture_releases_the_rest_to_original_batches(engine, settings, user_id):
    soon = await ok(engine, settings, grant(user_id, 10, days(5)))
    later = await ok(engine, settings, grant(user_id, 10, days(20)))
    await ok(engine, settings, hold(user_id, 15, "booking-p"))
    assert await remaining(engine, user_id) == {soon["batchId"]: 0, later["batchId"]: 5}

    captured = await ok(engine, settings, capture(user_id, reference="booking-p", credits=6))
    assert (captured["credits"], captured["released"]) == (6, 9)
    assert captured["balance"] == {"available": 14, "held": 0, "total": 14}
    # The latest-expiring credits come back first: `later` is whole again, `soon` gets 4.
    assert await remaining(engine, user_id) == {soon["batchId"]: 4, later["batchId"]: 10}
    types = [t["type"] for t in await transactions(engine, user_id)]
    assert types == ["ADJUSTMENT", "ADJUSTMENT", "CREDIT_HOLD", "CREDIT_USAGE", "CREDIT_RELEASE"]
    await assert_reconciled(engine)


async def test_capture_of_more_than_the_hold_is_refused(engine, settings, user_id):
    await ok(engine, settings, grant(user_id, 30))
    held = await ok(engine, settings, hold(user_id, 10, "booking-m"))
    assert await refused(engine, settings, capture(user_id, hold_id=held["holdId"], credits=11)) == "PAY007"
    assert await balance(engine, user_id) == (20, 10)
    await assert_reconciled(engine)


async def test_hold_then_release_returns_credits_to_their_batches(engine, settings, user_id):
    granted = await ok(engine, settings, grant(user_id, 10, days(5)))
    held = await ok(engine, settings, hold(user_id, 7, "booking-r"))
    assert await remaining(engine, user_id) == {granted["batchId"]: 3}
    assert await balance(engine, user_id) == (3, 7)

    released = await ok(engine, settings, release(user_id, hold_id=held["holdId"]))
    assert (released["credits"], released["status"]) == (7, "released")
    assert released["balance"] == {"available": 10, "held": 0, "total": 10}
    found = await batches(engine, user_id)
    assert list(found) == [granted["batchId"]] and found[granted["batchId"]]["remaining"] == 10
    assert await refused(engine, settings, release(user_id, hold_id=held["holdId"])) == "PAY014"
    assert await refused(engine, settings, capture(user_id, reference="booking-r")) == "PAY014"
    assert await balance(engine, user_id) == (10, 0)
    await assert_reconciled(engine)


async def test_hold_past_its_ttl_cannot_be_captured_and_expires_by_release(engine, settings, user_id):
    granted = await ok(engine, settings, grant(user_id, 10))
    short = HoldCredits(
        user_id=user_id, payload=HoldPayload(credits=6, reference="booking-t", ttl_seconds=1)
    )
    held = await ok(engine, settings, short)
    assert near(datetime.fromisoformat(held["expiresAt"]), datetime.now(UTC) + timedelta(seconds=1), 1)
    await asyncio.sleep(1.2)
    assert await refused(engine, settings, capture(user_id, hold_id=held["holdId"])) == "PAY014"
    assert await balance(engine, user_id) == (4, 6)
    # What `pika-payment expire` sends for a hold past its TTL.
    expiry = ReleaseCredits(
        user_id=user_id,
        payload=ReleasePayload(hold_id=uuid.UUID(held["holdId"]), reason="expired"),
    )
    released = await ok(engine, settings, expiry)
    assert (released["status"], released["credits"]) == ("expired", 6)
    assert await balance(engine, user_id) == (10, 0)
    assert await remaining(engine, user_id) == {granted["batchId"]: 10}
    async with engine.connect() as conn:
        status = await conn.scalar(
            text("SELECT status FROM holds WHERE id = :id"), {"id": uuid.UUID(held["holdId"])}
        )
    assert status == "expired"
    await assert_reconciled(engine)


async def test_hold_with_duplicate_open_reference_is_pay014(engine, settings, user_id):
    await ok(engine, settings, grant(user_id, 20))
    first = await ok(engine, settings, hold(user_id, 5, "booking-d"))
    assert await refused(engine, settings, hold(user_id, 3, "booking-d")) == "PAY014"
    assert await balance(engine, user_id) == (15, 5)
    # Another user may use the same reference, and so may this one once the hold settles.
    other = f"{user_id}-o"
    await ok(engine, settings, grant(other, 5))
    await ok(engine, settings, hold(other, 5, "booking-d"))
    await ok(engine, settings, release(user_id, reference="booking-d"))
    second = await ok(engine, settings, hold(user_id, 3, "booking-d"))
    assert second["holdId"] != first["holdId"]
    # By reference, the open hold is the one acted on.
    assert (await ok(engine, settings, capture(user_id, reference="booking-d")))["holdId"] == second["holdId"]
    assert await balance(engine, user_id) == (17, 0)
    assert await balance(engine, other) == (0, 5)
    await assert_reconciled(engine)


async def test_capture_of_an_unknown_hold_is_pay008(engine, settings, user_id):
    assert await refused(engine, settings, capture(user_id, reference="nothing")) == "PAY008"
    await ok(engine, settings, grant(user_id, 10))
    assert await refused(engine, settings, capture(user_id, reference="nothing")) == "PAY008"
    assert await refused(engine, settings, capture(user_id, hold_id=uuid.uuid4())) == "PAY008"
    assert await refused(engine, settings, release(user_id, hold_id=uuid.uuid4())) == "PAY008"
    # Another user's hold is unknown to this one.
    other = f"{user_id}-o"
    await ok(engine, settings, grant(other, 10))
    theirs = await ok(engine, settings, hold(other, 4, "booking-o"))
    assert await refused(engine, settings, capture(user_id, hold_id=theirs["holdId"])) == "PAY008"
    assert await refused(engine, settings, release(user_id, hold_id=theirs["holdId"])) == "PAY008"
    assert await balance(engine, other) == (6, 4)
    assert await balance(engine, user_id) == (10, 0)
    await assert_reconciled(engine)


# --- refunds ----------------------------------------------------------------------------


async def test_refund_returns_credits_to_the_batches_they_came_from(engine, settings, user_id):
    soon = await ok(engine, settings, grant(user_id, 10, days(5)))
    later = await ok(engine, settings, grant(user_id, 10, days(20)))
    spend = await ok(engine, settings, charge(user_id, 15))
    assert await balance(engine, user_id) == (5, 0)

    refunded = await ok(engine, settings, refund(user_id, spend["transactionId"]))
    assert (refunded["credits"], refunded["refundableLeft"]) == (15, 0)
    assert spent(refunded) == [(later["batchId"], 5), (soon["batchId"], 10)]
    expiries = {b["batchId"]: b["expiresAt"] for b in refunded["batches"]}
    assert expiries == {later["batchId"]: later["expiresAt"], soon["batchId"]: soon["expiresAt"]}
    found = await batches(engine, user_id)
    assert set(found) == {soon["batchId"], later["batchId"]}  # no new batch
    assert {k: v["remaining"] for k, v in found.items()} == {soon["batchId"]: 10, later["batchId"]: 10}
    assert await balance(engine, user_id) == (20, 0)
    assert await refused(engine, settings, refund(user_id, spend["transactionId"])) == "PAY014"
    # The refunded credits spend as before: earliest expiry first.
    again = await ok(engine, settings, charge(user_id, 3))
    assert spent(again) == [(soon["batchId"], 3)]
    await assert_reconciled(engine)


async def test_partial_refunds_up_to_the_total_then_pay014(engine, settings, user_id):
    await ok(engine, settings, grant(user_id, 30))
    spend = await ok(engine, settings, charge(user_id, 10))
    first = await ok(engine, settings, refund(user_id, spend["transactionId"], 4))
    assert (first["credits"], first["refundableLeft"]) == (4, 6)
    outcome = await one(engine, settings, refund(user_id, spend["transactionId"], 7))
    assert outcome.error_code == "PAY014"
    assert outcome.result["details"] == {"refundable": 6, "requested": 7}
    second = await ok(engine, settings, refund(user_id, spend["transactionId"], 6))
    assert (second["credits"], second["refundableLeft"]) == (6, 0)
    assert await refused(engine, settings, refund(user_id, spend["transactionId"], 1)) == "PAY014"
    assert await refused(engine, settings, refund(user_id, spend["transactionId"])) == "PAY014"
    assert await balance(engine, user_id) == (30, 0)
    refunds = [t for t in await transactions(engine, user_id) if t["type"] == "CREDIT_REFUND"]
    assert [t["credits"] for t in refunds] == [4, 6]
    assert {str(t["related_transaction_id"]) for t in refunds} == {spend["transactionId"]}
    await assert_reconciled(engine)


async def test_refund_of_a_captured_hold_works(engine, settings, user_id):
    granted = await ok(engine, settings, grant(user_id, 20))
    held = await ok(engine, settings, hold(user_id, 12, "booking-c"))
    captured = await ok(engine, settings, capture(user_id, hold_id=held["holdId"], credits=8))
    assert await balance(engine, user_id) == (12, 0)
    # Only the usage can be refunded, not the hold.
    assert await refused(engine, settings, refund(user_id, held["transactionId"])) == "PAY014"

    refunded = await ok(engine, settings, refund(user_id, captured["transactionId"]))
    assert (refunded["credits"], refunded["refundableLeft"]) == (8, 0)
    assert spent(refunded) == [(granted["batchId"], 8)]
    assert await remaining(engine, user_id) == {granted["batchId"]: 20}
    assert await balance(engine, user_id) == (20, 0)
    assert await refused(engine, settings, refund(user_id, captured["transactionId"], 1)) == "PAY014"
    # Someone else's transaction, or none at all, is not found.
    assert await refused(engine, settings, refund(f"{user_id}-o", captured["transactionId"])) == "PAY008"
    assert await refused(engine, settings, refund(user_id, uuid.uuid4())) == "PAY008"
    await assert_reconciled(engine)


async def test_refund_after_the_batch_expired_lands_in_a_new_refunded_batch(engine, settings, user_id):
    short = await ok(engine, settings, grant(user_id, 10, datetime.now(UTC) + timedelta(seconds=1)))
    spend = await ok(engine, settings, charge(user_id, 6))
    await asyncio.sleep(1.2)
    expired = await ok(engine, settings, expire(user_id, short["batchId"]))
    assert expired["credits"] == 4 and expired["balance"]["available"] == 0

    refunded = await ok(engine, settings, refund(user_id, spend["transactionId"]))
    assert refunded["credits"] == 6 and len(refunded["batches"]) == 1
    fresh = refunded["batches"][0]
    assert fresh["batchId"] != short["batchId"]
    assert (fresh["source"], fresh["credits"]) == ("REFUNDED", 6)
    found = await batches(engine, user_id)
    assert found[short["batchId"]]["status"] == "expired"
    assert found[short["batchId"]]["remaining"] == 0
    new = found[fresh["batchId"]]
    assert (new["source"], new["amount"], new["remaining"], new["status"]) == ("REFUNDED", 6, 6, "open")
    assert near(new["expires_at"], days(settings.credit_expiry_days))
    assert new["source_ref"] == spend["transactionId"]
    assert await balance(engine, user_id) == (6, 0)
    await assert_reconciled(engine)


# --- transfers and expiry ---------------------------------------------------------------


async def test_transfer_keeps_batch_expiry_and_appears_in_both_ledgers(engine, settings, user_id):
    sender, recipient = user_id, f"{user_id}-r"
    soon = await ok(engine, settings, grant(sender, 10, days(5)))
    later = await ok(engine, settings, grant(sender, 10, days(20)))
    own = await ok(engine, settings, grant(recipient, 3, days(10)))

    moved = await ok(engine, settings, transfer(sender, recipient, 15))
    assert moved["balance"] == {"available": 5, "held": 0, "total": 5}
    assert moved["recipientBalance"] == {"available": 18, "held": 0, "total": 18}
    assert await remaining(engine, sender) == {soon["batchId"]: 0, later["batchId"]: 5}
    origins = (soon["batchId"], later["batchId"])
    received = [b for b in (await batches(engine, recipient)).values() if b["source_ref"] in origins]
    by_origin = {b["source_ref"]: b for b in received}
    assert by_origin[soon["batchId"]]["remaining"] == 10
    assert by_origin[later["batchId"]]["remaining"] == 5
    assert by_origin[soon["batchId"]]["expires_at"].isoformat() == soon["expiresAt"]
    assert by_origin[later["batchId"]]["expires_at"].isoformat() == later["expiresAt"]
    assert {b["source"] for b in received} == {"PROMOTIONAL"}

    async with engine.connect() as conn:
        sent, _ = await queries.history(conn, sender, limit=10)
        got, _ = await queries.history(conn, recipient, limit=10)
    assert (sent[0]["type"], sent[0]["credits"], sent[0]["balance_after"]) == ("CREDIT_TRANSFER", -15, 5)
    assert (got[0]["type"], got[0]["credits"], got[0]["balance_after"]) == ("CREDIT_TRANSFER", 15, 18)
    assert sent[0]["id"] == got[0]["id"]

    # The recipient spends the transferred credits by their original expiry.
    spend = await ok(engine, settings, charge(recipient, 12))
    assert spent(spend) == [(str(by_origin[soon["batchId"]]["id"]), 10), (own["batchId"], 2)]
    assert await refused(engine, settings, transfer(sender, sender, 1)) == "PAY007"
    await assert_reconciled(engine)


async def test_a_charge_after_a_transfer_to_its_user_in_one_batch_sees_the_credits(
    engine, settings, user_id
):
    sender, recipient = user_id, f"{user_id}-r"
    await ok(engine, settings, grant(sender, 10))
    report = await apply(engine, settings, transfer(sender, recipient, 6), charge(recipient, 5))
    assert [o.status for o in report.outcomes] == ["applied", "applied"]
    assert await balance(engine, recipient) == (1, 0)
    await assert_reconciled(engine)


async def test_expire_of_a_due_batch_posts_credit_expiry_to_the_expired_account(engine, settings, user_id):
    short = await ok(engine, settings, grant(user_id, 10, datetime.now(UTC) + timedelta(seconds=1)))
    long = await ok(engine, settings, grant(user_id, 5, days(30)))
    await ok(engine, settings, charge(user_id, 3))
    assert await refused(engine, settings, expire(user_id, short["batchId"])) == "PAY014"
    assert await refused(engine, settings, expire(user_id, long["batchId"])) == "PAY014"
    await asyncio.sleep(1.2)

    expired = await ok(engine, settings, expire(user_id, short["batchId"]))
    assert expired["credits"] == 7
    assert expired["balance"] == {"available": 5, "held": 0, "total": 5}
    async with engine.connect() as conn:
        legs = (
            await conn.execute(
                text(
                    "SELECT coalesce(a.user_id, a.system_code) AS who, p.bucket, p.amount "
                    "FROM postings p JOIN accounts a ON a.id = p.account_id "
                    "WHERE p.transaction_id = :tx ORDER BY p.amount"
                ),
                {"tx": expired["transactionId"]},
            )
        ).all()
        tx_type = await conn.scalar(
            text("SELECT type FROM ledger_transactions WHERE id = :tx"), {"tx": expired["transactionId"]}
        )
    assert tx_type == "CREDIT_EXPIRY"
    assert [tuple(leg) for leg in legs] == [(user_id, "available", -7), ("expired", "available", 7)]
    found = await batches(engine, user_id)
    assert (found[short["batchId"]]["status"], found[short["batchId"]]["remaining"]) == ("expired", 0)
    assert found[long["batchId"]]["remaining"] == 5

    # Expiring again is harmless, a not-due batch is refused, another user's is not found.
    before = await footprint(engine, user_id)
    again = await ok(engine, settings, expire(user_id, short["batchId"]))
    assert (again["credits"], again.get("already")) == (0, True)
    assert (await footprint(engine, user_id))[1:] == before[1:]
    assert await refused(engine, settings, expire(user_id, long["batchId"])) == "PAY014"
    assert await refused(engine, settings, expire(f"{user_id}-o", long["batchId"])) == "PAY008"
    assert await balance(engine, user_id) == (5, 0)
    await assert_reconciled(engine)


# --- what the database itself refuses -----------------------------------------------------


def _sqlstate(error: DBAPIError) -> str | None:
    orig = error.orig
    return getattr(orig, "pgcode", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)


async def _refused_by_database(
    engine: AsyncEngine, statements: Sequence[tuple[str, dict[str, Any]]], sqlstate: str
) -> str:
    """Run the statements in a transaction on their own connection; the last must fail."""
    async with engine.connect() as conn:
        tx = await conn.begin()
        try:
            for sql, params in statements[:-1]:
                await conn.execute(text(sql), params)
            sql, params = statements[-1]
            with pytest.raises(DBAPIError) as info:
                await conn.execute(text(sql), params)
        finally:
            await tx.rollback()
    assert _sqlstate(info.value) == sqlstate, str(info.value)
    return str(info.value)


async def _accepted_by_database(engine: AsyncEngine, statements: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """The control: run the statements, count the rows they touched, roll back."""
    touched = 0
    async with engine.connect() as conn:
        tx = await conn.begin()
        try:
            for sql, params in statements:
                touched += (await conn.execute(text(sql), params)).rowcount
        finally:
            await tx.rollback()
    return touched


async def _funded_user(engine: AsyncEngine, settings: Settings, user: str) -> dict[str, Any]:
    granted = await ok(engine, settings, grant(user, 10))
    async with engine.connect() as conn:
        account = await conn.scalar(text("SELECT id FROM accounts WHERE user_id = :u"), {"u": user})
        bookings = await conn.scalar(text("SELECT id FROM accounts WHERE system_code = 'bookings'"))
    return {**granted, "account": account, "bookings": bookings}


NEW_TRANSACTION = (
    "INSERT INTO ledger_transactions (id, type, user_id, credits, command_id) "
    "VALUES (:tx, 'CREDIT_USAGE', :u, 3, :cmd)"
)


async def test_database_refuses_unbalanced_postings(engine, settings, user_id):
    funded = await _funded_user(engine, settings, user_id)
    tx = {"tx": uuid.uuid4(), "u": user_id, "cmd": uuid.uuid4()}
    legs = (
        "INSERT INTO postings (transaction_id, account_id, bucket, amount) "
        "VALUES (:tx, :a, 'available', -3), (:tx, :b, 'available', :n)"
    )
    unbalanced = {"tx": tx["tx"], "a": funded["account"], "b": funded["bookings"], "n": 2}
    message = await _refused_by_database(
        engine, [(NEW_TRANSACTION, tx), (legs, unbalanced)], "23514"
    )
    assert "do not sum to zero" in message
    # One leg at a time is unbalanced per statement, too.
    one_leg = (
        "INSERT INTO postings (transaction_id, account_id, bucket, amount) "
        "VALUES (:tx, :a, 'available', -3)"
    )
    await _refused_by_database(
        engine, [(NEW_TRANSACTION, tx), (one_leg, {"tx": tx["tx"], "a": funded["account"]})], "23514"
    )
    # The control: the same legs, balanced, are accepted.
    assert await _accepted_by_database(engine, [(NEW_TRANSACTION, tx), (legs, {**unbalanced, "n": 3})]) == 3
    await assert_reconciled(engine)


async def test_database_refuses_changing_or_deleting_history(engine, settings, user_id):
    funded = await _funded_user(engine, settings, user_id)
    tx = {"tx": funded["transactionId"]}
    refusals = [
        "UPDATE postings SET amount = amount * 2 WHERE transaction_id = :tx",
        "DELETE FROM postings WHERE transaction_id = :tx",
        "UPDATE ledger_transactions SET credits = 99 WHERE id = :tx",
        "DELETE FROM ledger_transactions WHERE id = :tx",
        "UPDATE batch_allocations SET amount = 99 WHERE transaction_id = :tx",
        "DELETE FROM batch_allocations WHERE transaction_id = :tx",
    ]
    for sql in refusals:
        message = await _refused_by_database(engine, [(sql, tx)], "42501")
        assert "append-only" in message
    # Only a transaction's status may change.
    status_only = "UPDATE ledger_transactions SET status = 'REVERSED' WHERE id = :tx"
    assert await _accepted_by_database(engine, [(status_only, tx)]) == 1
    async with engine.connect() as conn:
        status = await conn.scalar(text("SELECT status FROM ledger_transactions WHERE id = :tx"), tx)
    assert status == "COMPLETED"
    await assert_reconciled(engine)


async def test_database_refuses_a_negative_user_balance(engine, settings, user_id):
    await _funded_user(engine, settings, user_id)
    for column in ("available", "held"):
        sql = f"UPDATE accounts SET {column} = -1 WHERE user_id = :u"
        message = await _refused_by_database(engine, [(sql, {"u": user_id})], "23514")
        assert "user_balance_not_negative" in message
    # A system account's balance is derived from postings and stays zero in its row.
    await _refused_by_database(
        engine, [("UPDATE accounts SET available = 5 WHERE system_code = 'bookings'", {})], "23514"
    )
    zero_held = ("UPDATE accounts SET held = 0 WHERE user_id = :u", {"u": user_id})
    assert await _accepted_by_database(engine, [zero_held]) == 1
    assert await balance(engine, user_id) == (10, 0)
    await assert_reconciled(engine)


async def test_database_refuses_batch_remaining_outside_its_amount(engine, settings, user_id):
    funded = await _funded_user(engine, settings, user_id)
    batch = {"b": funded["batchId"]}
    for value in ("amount + 1", "-1"):
        sql = f"UPDATE credit_batches SET remaining = {value} WHERE id = :b"
        message = await _refused_by_database(engine, [(sql, batch)], "23514")
        assert "remaining_within_batch" in message
    await _refused_by_database(
        engine, [("UPDATE credit_batches SET status = 'expired' WHERE id = :b", batch)], "23514"
    )
    full = ("UPDATE credit_batches SET remaining = amount WHERE id = :b", batch)
    assert await _accepted_by_database(engine, [full]) == 1
    assert await remaining(engine, user_id) == {funded["batchId"]: 10}
    await assert_reconciled(engine)


async def test_database_refuses_an_available_balance_its_open_batches_do_not_hold(
    engine, settings, user_id
):
    funded = await _funded_user(engine, settings, user_id)
    account = {"u": user_id}
    # Checked at commit (the balance and the batches move in separate statements):
    # SET CONSTRAINTS ... IMMEDIATE runs the deferred check now.
    drift = ("UPDATE accounts SET available = available + 1 WHERE user_id = :u", account)
    check_now = ("SET CONSTRAINTS available_is_open_batches IMMEDIATE", {})
    message = await _refused_by_database(engine, [drift, check_now], "23514")
    assert "open batches hold" in message
    both = ("UPDATE credit_batches SET remaining = remaining - 1 WHERE id = :b",
            {"b": funded["batchId"]})
    less = ("UPDATE accounts SET available = available - 1 WHERE user_id = :u", account)
    async with engine.connect() as conn:  # the control: both move, the check passes
        tx = await conn.begin()
        try:
            for sql, params in (both, less, check_now):
                await conn.execute(text(sql), params)
        finally:
            await tx.rollback()
    await assert_reconciled(engine)


async def test_database_refuses_settling_a_hold_for_more_than_it_holds(engine, settings, user_id):
    await _funded_user(engine, settings, user_id)
    held = await ok(engine, settings, hold(user_id, 4, "b-db-hold"))
    settle = (
        "INSERT INTO ledger_transactions (id, type, user_id, credits, command_id, hold_id) "
        "VALUES (:tx, :type, :u, :n, :cmd, :hold)"
    )
    base = {"u": user_id, "hold": held["holdId"]}
    first = (settle, {**base, "tx": uuid.uuid4(), "cmd": uuid.uuid4(), "type": "CREDIT_USAGE",
                      "n": 3})
    second = (settle, {**base, "tx": uuid.uuid4(), "cmd": uuid.uuid4(),
                       "type": "CREDIT_RELEASE", "n": 2})
    message = await _refused_by_database(engine, [first, second], "23514")
    assert "settled for 5 credits, it holds 4" in message
    exact = (settle, {**second[1], "n": 1})
    assert await _accepted_by_database(engine, [first, exact]) == 2
    await assert_reconciled(engine)


async def test_database_refuses_refunding_a_charge_for_more_than_it_took(engine, settings, user_id):
    await _funded_user(engine, settings, user_id)
    charged = await ok(engine, settings, charge(user_id, 3, "b-db-refund"))
    refund_sql = (
        "INSERT INTO ledger_transactions (id, type, user_id, credits, command_id, "
        "related_transaction_id) VALUES (:tx, 'CREDIT_REFUND', :u, :n, :cmd, :charge)"
    )
    base = {"u": user_id, "charge": charged["transactionId"]}
    two = (refund_sql, {**base, "tx": uuid.uuid4(), "cmd": uuid.uuid4(), "n": 2})
    two_more = (refund_sql, {**base, "tx": uuid.uuid4(), "cmd": uuid.uuid4(), "n": 2})
    message = await _refused_by_database(engine, [two, two_more], "23514")
    assert "refunded 4 credits, it took 3" in message
    assert await _accepted_by_database(engine, [two]) == 1
    await assert_reconciled(engine)


async def test_daily_transaction_limit_refuses_charges_holds_and_transfers_with_pay016(
    engine, settings, user_id
):
    strict = settings.model_copy(update={"max_daily_transactions": 2})
    await ok(engine, strict, grant(user_id, 20))  # grants are not counted
    first = await ok(engine, strict, charge(user_id, 1, "b-1"))
    await ok(engine, strict, charge(user_id, 1, "b-2"))
    assert await refused(engine, strict, charge(user_id, 1, "b-3")) == "PAY016"
    assert await refused(engine, strict, hold(user_id, 1, "b-4")) == "PAY016"
    assert await refused(engine, strict, transfer(user_id, f"{user_id}-r", 1)) == "PAY016"
    # A refund gives credits back: not a counted transaction, not refused.
    await ok(engine, strict, refund(user_id, first["transactionId"]))
    assert await balance(engine, user_id) == (19, 0)
    await assert_reconciled(engine)


def test_a_purchase_over_the_daily_limit_is_refused_before_stripe(settings):
    from services.errors import TransactionLimitExceeded
    from services.purchases.checkout import check_limits

    pack = {"credits": 20, "bonus_credits": 0}
    strict = settings.model_copy(update={"max_daily_transactions": 3})
    check_limits(strict, pack, balance_total=0, today=2)
    with pytest.raises(TransactionLimitExceeded):
        check_limits(strict, pack, balance_total=0, today=3)
