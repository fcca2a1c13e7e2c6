"""Random command sequences on the real ledger, checked step by step against a small model.

The model is the ledger's rules written plainly (docs/architecture.md, "The ledger"): spend earliest expiry
first (ties: oldest, then batch id), give returns back latest expiry first to the batch
they came from unless it is no longer open and unexpired, then to one fresh REFUNDED
batch. After every step the ledger must agree with the model on balances, holds and
every batch, and `reconcile` must find nothing wrong in the whole database.

Time matters (short-lived batches expire during a sequence), so before each step the
clock is let past any expiry that falls within `MARGIN` of now: whatever the handler
compares with its own `now`, the model decides the same way.
"""

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text
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
from services.ledger.apply import apply_commands
from services.ledger.context import Outcome
from services.ledger.invariant_queries import reconcile
from services.settings import Settings

REGISTRY = command_registry()  # built once, as the ledger worker does at start

MAX_BALANCE, MAX_AMOUNT = 100, 60
SHORT = timedelta(seconds=0.25)
MARGIN = timedelta(seconds=0.1)
USERS = 3
REFS = 2
T = TypeVar("T")


# --- the steps a sequence is made of ---------------------------------------------------


@dataclass(frozen=True)
class Grant:
    user: int
    credits: int
    days: int  # 0: a short-lived batch that falls due during the sequence


@dataclass(frozen=True)
class Charge:
    user: int
    credits: int


@dataclass(frozen=True)
class Hold:
    user: int
    credits: int
    ref: int


@dataclass(frozen=True)
class Capture:
    user: int
    pick: int  # which hold: mostly one of the user's open holds, now and then anyone's
    credits: int | None


@dataclass(frozen=True)
class Release:
    user: int
    pick: int  # as for Capture


@dataclass(frozen=True)
class Refund:
    user: int
    pick: int  # which usage transaction: mostly the user's own, now and then anyone's
    credits: int | None


@dataclass(frozen=True)
class Expire:
    user: int
    pick: int  # which batch: mostly the user's own, now and then anyone's


@dataclass(frozen=True)
class Transfer:
    user: int
    to: int
    credits: int


@dataclass(frozen=True)
class Wait:
    """Let every short-lived batch fall due."""


@dataclass(frozen=True)
class Intent:
    """Numbers drawn for one step of a random sequence; `Runner.resolve` makes the step."""

    roll: int
    user: int
    to: int
    credits: int
    pick: int
    partial: int | None
    ref: int
    days: int


users = st.sampled_from([0, 0, 1, 1, 2])
small = st.integers(1, 25)
amounts = st.one_of(small, small, st.integers(1, MAX_AMOUNT + 10))  # now and then over a limit
partial = st.none() | st.integers(1, 25)
refs = st.integers(0, REFS - 1)
picks = st.integers(0, 50)
expiries = st.sampled_from([0, 10, 20, 30])
grants = st.builds(Grant, users, amounts, expiries)
# Steps drawn blind, for the test that has no model to aim with (repeats weigh more).
blind_steps = [
    grants,
    grants,
    st.builds(Charge, users, amounts),
    st.builds(Charge, users, small),
    st.builds(Hold, users, amounts, refs),
    st.builds(Hold, users, small, refs),
    st.builds(Capture, users, picks, partial),
    st.builds(Release, users, picks),
    st.builds(Refund, users, picks, partial),
    st.builds(Expire, users, picks),
]
openings = st.lists(st.builds(Grant, users, st.integers(10, 50), expiries), min_size=2, max_size=3)
intents = st.builds(
    Intent, st.integers(0, 10_000), users, users, amounts, picks, partial, refs, expiries
)


# --- the model -------------------------------------------------------------------------


@dataclass
class MBatch:
    id: str
    user: str
    source: str
    amount: int
    remaining: int
    expires_at: datetime
    acquired_at: datetime
    status: str = "open"

    def spend_key(self) -> tuple[datetime, datetime, uuid.UUID]:
        return (self.expires_at, self.acquired_at, uuid.UUID(self.id))


@dataclass
class MDebit:
    """What a charge, hold or transfer took per batch, and what came back per batch."""

    taken: dict[str, int]
    returned: dict[str, int] = field(default_factory=dict)


@dataclass
class MHold:
    id: str
    user: str
    reference: str
    credits: int
    debit: str
    status: str = "open"


@dataclass
class MUsage:
    tx: str
    user: str
    credits: int
    debit: str
    refunded: int = 0


@dataclass
class NewBatch:
    """A batch a step is expected to create; its id is learnt from the database."""

    user: str
    source: str
    amount: int
    source_ref: str
    expires_at: datetime | None  # None: a REFUNDED batch, about now + CREDIT_EXPIRY_DAYS


@dataclass
class Model:
    users: list[str]
    limits: Settings
    accounts: set[str] = field(default_factory=set)
    available: dict[str, int] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)
    batches: dict[str, MBatch] = field(default_factory=dict)
    debits: dict[str, MDebit] = field(default_factory=dict)
    holds: list[MHold] = field(default_factory=list)
    usages: list[MUsage] = field(default_factory=list)

    def __post_init__(self) -> None:
        for user in self.users:
            self.available[user], self.held[user] = 0, 0

    def spend_order(self, user: str) -> list[MBatch]:
        open_ = [b for b in self.batches.values() if b.user == user and b.status == "open"]
        return sorted((b for b in open_ if b.remaining > 0), key=MBatch.spend_key)

    def take(self, user: str, credits: int) -> list[tuple[str, int]]:
        """Earliest expiry first: the batches a debit of `credits` takes, in order."""
        taken, left = [], credits
        for batch in self.spend_order(user):
            if left == 0:
                break
            n = min(batch.remaining, left)
            taken.append((batch.id, n))
            left -= n
        assert left == 0, "the model let a debit exceed the batches"
        return taken

    def apply_take(self, user: str, debit_tx: str, taken: list[tuple[str, int]]) -> None:
        for batch_id, n in taken:
            self.batches[batch_id].remaining -= n
        self.debits[debit_tx] = MDebit(dict(taken))
        self.available[user] -= sum(n for _, n in taken)

    def give_back(
        self, user: str, debit_tx: str, credits: int, now: datetime
    ) -> tuple[list[tuple[str, int]], list[NewBatch]]:
        """Return `credits` of a debit: latest-expiring origin first, dead origins to REFUNDED."""
        debit = self.debits[debit_tx]
        owed = [
            (self.batches[b], n - debit.returned.get(b, 0))
            for b, n in debit.taken.items()
            if n - debit.returned.get(b, 0) > 0
        ]
        owed.sort(key=lambda pair: pair[0].spend_key(), reverse=True)
        refilled, to_refunded, left = [], 0, credits
        for batch, n_owed in owed:
            if left == 0:
                break
            n = min(n_owed, left)
            left -= n
            debit.returned[batch.id] = debit.returned.get(batch.id, 0) + n
            if batch.status == "open" and batch.expires_at > now:
                batch.remaining += n
                refilled.append((batch.id, n))
            else:
                to_refunded += n
        assert left == 0, "the model returned more than was outstanding"
        new = [NewBatch(user, "REFUNDED", to_refunded, debit_tx, None)] if to_refunded else []
        return refilled, new

    def find_hold(self, user: str, reference: str) -> MHold | None:
        mine = [h for h in self.holds if h.user == user and h.reference == reference]
        open_ = [h for h in mine if h.status == "open"]
        return (open_ or mine[-1:] or [None])[-1]

    def total(self, user: str) -> int:
        return self.available[user] + self.held[user]


# --- running a sequence ------------------------------------------------------------------


def choose(pool: list[T], pick: int, mine: Callable[[T], bool]) -> T | None:
    """One of `pool`: mostly one that `mine` accepts, every fourth pick any."""
    own = [item for item in pool if mine(item)]
    candidates = own if own and pick % 4 else pool
    return candidates[pick % len(candidates)] if candidates else None


def fields(outcome: Outcome) -> tuple[str, str | None]:
    return outcome.status, outcome.error_code


def spent(items: Sequence[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(item["batchId"], item["credits"]) for item in items]


def event_batches(outcome: Outcome, event_type: str, user: str) -> list[tuple[str, int]]:
    event = next(e for e in outcome.events if e.type == event_type and e.user_id == user)
    return spent(event.payload.batches)  # type: ignore[attr-defined]


class Runner:
    """Applies steps one command at a time and checks the ledger against the model."""

    def __init__(self, engine: AsyncEngine, settings: Settings, drawn: bool = True) -> None:
        self.engine = engine
        self.settings = settings.model_copy(
            update={"max_credit_balance": MAX_BALANCE, "max_transaction_amount": MAX_AMOUNT}
        )
        tag = uuid.uuid4().hex[:10]
        self.model = Model([f"p-{tag}-{n}" for n in range(USERS)], self.settings)
        self.base = datetime.now(UTC)
        self.outcomes: list[Outcome] = []
        self.drawn = drawn  # steps drawn by hypothesis: note them for the failure report

    def user(self, n: int) -> str:
        return self.model.users[n]

    def pick_reference(self, user: str, pick: int) -> str:
        """The reference of a hold to capture or release; the model decides what it finds."""
        found = choose(self.model.holds, pick, lambda h: h.user == user and h.status == "open")
        return found.reference if found else f"ref-{pick % REFS}"

    def resolve(self, intent: Intent) -> Any:
        """Turn drawn numbers into a step; steps that find something to act on weigh more.

        The draws never depend on the ledger (hypothesis replays them), only this choice does.
        """
        m, now = self.model, datetime.now(UTC)

        def having(test: Callable[[str], bool]) -> list[int]:
            return [n for n, user in enumerate(m.users) if test(user)]

        funded = having(lambda u: m.available[u] > 0)
        holding = having(lambda u: any(h.user == u and h.status == "open" for h in m.holds))
        refundable = having(lambda u: any(x.user == u and x.refunded < x.credits for x in m.usages))
        due = having(
            lambda u: any(
                b.user == u and b.status == "open" and b.expires_at <= now for b in m.batches.values()
            )
        )
        pending = any(b.status == "open" and b.expires_at > now for b in m.batches.values())
        kinds = ["grant", "grant", "charge", "hold", "capture", "release", "refund", "expire", "transfer"]
        kinds += ["charge funded"] * 3 + ["hold funded"] * 2 + ["transfer funded"] if funded else []
        kinds += ["capture holding"] * 3 + ["release holding"] * 2 if holding else []
        kinds += ["refund refundable"] * 3 if refundable else []
        kinds += ["expire due"] * 2 if due else []
        kinds += ["wait"] if pending else []
        # Hypothesis draws small numbers more often than large: spread them over the kinds.
        kind, _, among = kinds[(intent.roll * 40_503) % 65_537 % len(kinds)].partition(" ")
        eligible = {"funded": funded, "holding": holding, "refundable": refundable, "due": due}
        user = eligible[among][intent.user % len(eligible[among])] if among else intent.user
        credits = intent.credits
        if among == "funded":  # mostly what the user has, now and then over the amount limit
            credits = 1 + (credits - 1) % m.available[m.users[user]]
        match kind:
            case "grant":
                return Grant(user, credits, intent.days)
            case "charge":
                return Charge(user, credits)
            case "hold":
                return Hold(user, credits, intent.ref)
            case "capture":
                return Capture(user, intent.pick, intent.partial)
            case "release":
                return Release(user, intent.pick)
            case "refund":
                return Refund(user, intent.pick, intent.partial)
            case "expire":
                return Expire(user, intent.pick)
            case "transfer":
                return Transfer(user, intent.to, credits)
        return Wait()

    async def settle_clock(self) -> datetime:
        """Wait until no open batch falls due within MARGIN; return the model's now."""
        while True:
            now = datetime.now(UTC)
            close = [
                b.expires_at
                for b in self.model.batches.values()
                if b.status == "open" and now < b.expires_at <= now + MARGIN
            ]
            if not close:
                return now
            await asyncio.sleep((max(close) - now).total_seconds() + 0.001)

    async def apply(self, command: CommandEnvelope) -> Outcome:
        report = await apply_commands(self.engine, self.settings, [command], REGISTRY)
        assert len(report.outcomes) == 1 and report.duplicates == 0
        outcome = report.outcomes[0]
        self.outcomes.append(outcome)
        if self.drawn:
            event(f"{command.type} {outcome.error_code or outcome.status}")  # type: ignore[attr-defined]
        return outcome

    async def run(self, step: Any) -> None:
        if self.drawn:
            note(repr(step))
        now = await self.settle_clock()
        handler = getattr(self, f"do_{type(step).__name__.lower()}")
        new: list[NewBatch] = await handler(step, now) or []
        await self.learn_batches(new, now)
        await self.check()

    # --- one method per step: decide as the rules say, apply, compare, update the model

    async def do_wait(self, step: Wait, now: datetime) -> None:
        due = [b.expires_at for b in self.model.batches.values() if b.status == "open"]
        soon = [t for t in due if t - now < timedelta(seconds=1)]
        if soon:
            await asyncio.sleep((max(soon) - now).total_seconds() + 0.01)

    async def do_grant(self, step: Grant, now: datetime) -> list[NewBatch]:
        m, user = self.model, self.user(step.user)
        expires_at = now + SHORT if step.days == 0 else self.base + timedelta(days=step.days)
        outcome = await self.apply(
            GrantCredits(
                user_id=user,
                payload=GrantPayload(credits=step.credits, reason="prop", expires_at=expires_at),
            )
        )
        if step.credits > MAX_AMOUNT:
            assert fields(outcome) == ("rejected", "PAY016")
        elif m.total(user) + step.credits > MAX_BALANCE:
            assert fields(outcome) == ("rejected", "PAY006")
        else:
            assert fields(outcome) == ("applied", None), outcome.result
            m.accounts.add(user)
            m.available[user] += step.credits
            return [NewBatch(user, "PROMOTIONAL", step.credits, str(outcome.command.id), expires_at)]
        return []

    async def do_charge(self, step: Charge, now: datetime) -> None:
        m, user = self.model, self.user(step.user)
        outcome = await self.apply(
            ChargeCredits(user_id=user, payload=ChargePayload(credits=step.credits, reference="prop"))
        )
        if step.credits > MAX_AMOUNT:
            assert fields(outcome) == ("rejected", "PAY016")
        elif step.credits > m.available[user]:
            assert fields(outcome) == ("rejected", "PAY001")
        else:
            assert fields(outcome) == ("applied", None), outcome.result
            expected = m.take(user, step.credits)
            # FIFO by expiry, stated on its own: the batches taken are a prefix of the
            # spend order, all drained but the last.
            order = [b.id for b in m.spend_order(user)]
            got = spent(outcome.result["batches"])
            assert [b for b, _ in got] == order[: len(got)]
            assert all(n == m.batches[b].remaining for b, n in got[:-1])
            assert got == expected
            assert event_batches(outcome, "credits.charged", user) == expected
            tx = outcome.result["transactionId"]
            m.apply_take(user, tx, expected)
            m.usages.append(MUsage(tx, user, step.credits, tx))

    async def do_hold(self, step: Hold, now: datetime) -> None:
        m, user, reference = self.model, self.user(step.user), f"ref-{step.ref}"
        outcome = await self.apply(
            HoldCredits(user_id=user, payload=HoldPayload(credits=step.credits, reference=reference))
        )
        existing = m.find_hold(user, reference)
        if step.credits > MAX_AMOUNT:
            assert fields(outcome) == ("rejected", "PAY016")
        elif step.credits > m.available[user]:
            assert fields(outcome) == ("rejected", "PAY001")
        elif existing is not None and existing.status == "open":
            assert fields(outcome) == ("rejected", "PAY014")
        else:
            assert fields(outcome) == ("applied", None), outcome.result
            expected = m.take(user, step.credits)
            assert event_batches(outcome, "credits.held", user) == expected
            tx = outcome.result["transactionId"]
            m.apply_take(user, tx, expected)
            m.held[user] += step.credits
            m.holds.append(MHold(outcome.result["holdId"], user, reference, step.credits, tx))

    async def do_capture(self, step: Capture, now: datetime) -> list[NewBatch]:
        m, user = self.model, self.user(step.user)
        reference = self.pick_reference(user, step.pick)
        outcome = await self.apply(
            CaptureCredits(
                user_id=user, payload=CapturePayload(reference=reference, credits=step.credits)
            )
        )
        found = m.find_hold(user, reference)
        if user not in m.accounts or found is None:
            assert fields(outcome) == ("rejected", "PAY008")
        elif found.status != "open":
            assert fields(outcome) == ("rejected", "PAY014")
        elif step.credits is not None and step.credits > found.credits:
            assert fields(outcome) == ("rejected", "PAY007")
        else:
            assert fields(outcome) == ("applied", None), outcome.result
            credits = step.credits or found.credits
            rest = found.credits - credits
            assert (outcome.result["holdId"], outcome.result["released"]) == (found.id, rest)
            new: list[NewBatch] = []
            if rest:
                _, new = m.give_back(user, found.debit, rest, now)
            m.available[user] += rest
            m.held[user] -= found.credits
            found.status = "captured"
            m.usages.append(MUsage(outcome.result["transactionId"], user, credits, found.debit))
            return new
        return []

    async def do_release(self, step: Release, now: datetime) -> list[NewBatch]:
        m, user = self.model, self.user(step.user)
        reference = self.pick_reference(user, step.pick)
        outcome = await self.apply(
            ReleaseCredits(user_id=user, payload=ReleasePayload(reference=reference))
        )
        found = m.find_hold(user, reference)
        if user not in m.accounts or found is None:
            assert fields(outcome) == ("rejected", "PAY008")
        elif found.status != "open":
            assert fields(outcome) == ("rejected", "PAY014")
        else:
            assert fields(outcome) == ("applied", None), outcome.result
            refilled, new = m.give_back(user, found.debit, found.credits, now)
            returned = event_batches(outcome, "credits.released", user)
            assert returned[: len(refilled)] == refilled
            assert sum(n for _, n in returned[len(refilled) :]) == sum(b.amount for b in new)
            m.available[user] += found.credits
            m.held[user] -= found.credits
            found.status = "released"
            return new
        return []

    async def do_refund(self, step: Refund, now: datetime) -> list[NewBatch]:
        m, user = self.model, self.user(step.user)
        usage = choose(m.usages, step.pick, lambda x: x.user == user and x.refunded < x.credits)
        tx = uuid.UUID(usage.tx) if usage else uuid.uuid4()
        outcome = await self.apply(
            RefundCredits(
                user_id=user,
                payload=RefundPayload(transaction_id=tx, credits=step.credits, reason="prop"),
            )
        )
        if user not in m.accounts or usage is None or usage.user != user:
            assert fields(outcome) == ("rejected", "PAY008")
            return []
        refundable = usage.credits - usage.refunded
        credits = step.credits or refundable
        if refundable == 0 or credits > refundable:
            assert fields(outcome) == ("rejected", "PAY014")
            return []
        assert fields(outcome) == ("applied", None), outcome.result
        assert outcome.result["refundableLeft"] == refundable - credits
        refilled, new = m.give_back(user, usage.debit, credits, now)
        returned = spent(outcome.result["batches"])
        assert returned[: len(refilled)] == refilled
        for batch_id, _ in returned[len(refilled) :]:
            assert batch_id not in m.batches  # a fresh REFUNDED batch
        assert sum(n for _, n in returned[len(refilled) :]) == sum(b.amount for b in new)
        usage.refunded += credits
        m.available[user] += credits
        return new

    async def do_expire(self, step: Expire, now: datetime) -> None:
        m, user = self.model, self.user(step.user)
        batch = choose(
            list(m.batches.values()),
            step.pick,
            lambda b: b.user == user and b.status == "open" and b.expires_at <= now,
        )
        batch_id = uuid.UUID(batch.id) if batch else uuid.uuid4()
        outcome = await self.apply(ExpireCredits(user_id=user, payload=ExpirePayload(batch_id=batch_id)))
        if user not in m.accounts or batch is None or batch.user != user:
            assert fields(outcome) == ("rejected", "PAY008")
        elif batch.status == "expired":
            assert fields(outcome) == ("applied", None)
            assert (outcome.result["credits"], outcome.result.get("already")) == (0, True)
        elif batch.expires_at > now:
            assert fields(outcome) == ("rejected", "PAY014")
        else:
            assert fields(outcome) == ("applied", None), outcome.result
            assert outcome.result["credits"] == batch.remaining
            m.available[user] -= batch.remaining
            batch.remaining, batch.status = 0, "expired"

    async def do_transfer(self, step: Transfer, now: datetime) -> list[NewBatch]:
        m, user, to = self.model, self.user(step.user), self.user(step.to)
        outcome = await self.apply(
            TransferCredits(
                user_id=user, payload=TransferPayload(to_user_id=to, credits=step.credits, reason="p")
            )
        )
        if user == to:
            assert fields(outcome) == ("rejected", "PAY007")
        elif step.credits > MAX_AMOUNT:
            assert fields(outcome) == ("rejected", "PAY016")
        elif step.credits > m.available[user]:
            assert fields(outcome) == ("rejected", "PAY001")
        elif m.total(to) + step.credits > MAX_BALANCE:
            assert fields(outcome) == ("rejected", "PAY006")
        else:
            assert fields(outcome) == ("applied", None), outcome.result
            expected = m.take(user, step.credits)
            assert event_batches(outcome, "credits.transferred", user) == expected
            m.apply_take(user, outcome.result["transactionId"], expected)
            m.accounts.add(to)
            m.available[to] += step.credits
            return [
                NewBatch(to, m.batches[b].source, n, b, m.batches[b].expires_at) for b, n in expected
            ]
        return []

    # --- comparing the ledger with the model ---------------------------------------------

    async def learn_batches(self, expected: list[NewBatch], now: datetime) -> None:
        """The batches the step created must be exactly the expected ones."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id::text AS id, user_id, source, amount, remaining, status, "
                        "expires_at, acquired_at, source_ref FROM credit_batches "
                        "WHERE user_id = ANY(CAST(:users AS text[]))"
                    ),
                    {"users": self.model.users},
                )
            ).mappings().all()
        fresh = [r for r in rows if r["id"] not in self.model.batches]
        assert len(fresh) == len(expected), (fresh, expected)
        left = list(expected)
        for row in fresh:
            match = next(
                (
                    e
                    for e in left
                    if (e.user, e.source, e.amount, e.source_ref)
                    == (row["user_id"], row["source"], row["amount"], row["source_ref"])
                ),
                None,
            )
            assert match is not None, (row, left)
            left.remove(match)
            assert (row["remaining"], row["status"]) == (row["amount"], "open")
            if match.expires_at is None:
                lifetime = timedelta(days=self.settings.credit_expiry_days)
                assert abs(row["expires_at"] - (now + lifetime)) < timedelta(seconds=30)
            else:
                assert row["expires_at"] == match.expires_at
            self.model.batches[row["id"]] = MBatch(
                row["id"], row["user_id"], row["source"], row["amount"], row["amount"],
                row["expires_at"], row["acquired_at"],
            )

    async def check(self) -> None:
        m = self.model
        for batch in m.batches.values():
            assert 0 <= batch.remaining <= batch.amount, batch
            assert batch.status == "open" or batch.remaining == 0, batch
        for user in m.users:
            assert m.available[user] == sum(
                b.remaining for b in m.batches.values() if b.user == user and b.status == "open"
            )
            assert m.held[user] == sum(h.credits for h in m.holds if h.user == user and h.status == "open")
        async with self.engine.connect() as conn:
            params = {"users": m.users}
            accounts = {
                r.user_id: (r.available, r.held)
                for r in await conn.execute(
                    text(
                        "SELECT user_id, available, held FROM accounts "
                        "WHERE user_id = ANY(CAST(:users AS text[]))"
                    ),
                    params,
                )
            }
            batches = {
                r.id: (r.remaining, r.status)
                for r in await conn.execute(
                    text(
                        "SELECT id::text AS id, remaining, status FROM credit_batches "
                        "WHERE user_id = ANY(CAST(:users AS text[]))"
                    ),
                    params,
                )
            }
            holds = {
                r.id: r.status
                for r in await conn.execute(
                    text(
                        "SELECT id::text AS id, status FROM holds "
                        "WHERE user_id = ANY(CAST(:users AS text[]))"
                    ),
                    params,
                )
            }
        assert accounts == {u: (m.available[u], m.held[u]) for u in m.accounts}
        assert batches == {b.id: (b.remaining, b.status) for b in m.batches.values()}
        assert holds == {h.id: h.status for h in m.holds}
        assert [str(d) for d in await reconcile(self.engine)] == []


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opening=openings, intents=st.lists(intents, min_size=6, max_size=12))
async def test_random_sequences_keep_the_ledger_equal_to_the_model(engine, settings, opening, intents):
    runner = Runner(engine, settings)
    for step in opening:
        await runner.run(step)
    for intent in intents:
        await runner.run(runner.resolve(intent))


async def test_every_kind_of_step_keeps_the_ledger_equal_to_the_model(engine, settings):
    """A fixed sequence in which each kind of step applies, whatever the random draws do."""
    runner = Runner(engine, settings, drawn=False)
    steps = [
        Grant(0, 30, 0),
        Grant(0, 20, 10),
        Grant(1, 10, 20),
        Charge(0, 25),  # 25 of the short-lived batch
        Hold(0, 10, 0),  # 5 short-lived, 5 of the 10-day batch
        Capture(0, 1, 4),  # 6 released, latest expiry first
        Refund(0, 1, 3),
        Hold(0, 8, 1),
        Wait(),
        Expire(0, 1),  # the short-lived batch, now due
        Release(0, 1),  # what came from the expired batch goes to a REFUNDED batch
        Refund(0, 1, None),
        Refund(0, 1, 30),  # more than the charge left to refund: PAY014
        Transfer(0, 1, 12),
        Charge(1, 15),
        Grant(2, 70, 10),  # over the amount limit
    ]
    for step in steps:
        await runner.run(step)
    kinds = {o.command.type: o.status for o in runner.outcomes}
    assert set(kinds) == {
        "credits.grant", "credits.charge", "credits.hold", "credits.capture", "credits.refund",
        "credits.expire", "credits.release", "credits.transfer",
    }
    applied = {o.command.type for o in runner.outcomes if o.status == "applied"}
    assert applied == set(kinds)
    assert runner.model.available[runner.user(0)] + runner.model.held[runner.user(0)] > 0


# --- one batch or one command at a time: the same ledger --------------------------------


equivalence_steps = st.tuples(openings, st.lists(st.one_of(*blind_steps), min_size=6, max_size=12)).map(
    lambda parts: parts[0] + parts[1]
)


async def _set_up(engine: AsyncEngine, limited: Settings, groups: list[list[str]]) -> list[dict[str, Any]]:
    """Per user: a short-lived batch, two long ones, and a charge to refund later.

    Both groups get theirs in the same two batches, so their expiries are equal.
    """
    base = datetime.now(UTC)
    expiries = (base + SHORT, base + timedelta(days=10), base + timedelta(days=20))
    grants = {
        (u, n): GrantCredits(user_id=u, payload=GrantPayload(credits=20, reason="setup", expires_at=e))
        for group in groups
        for u in group
        for n, e in enumerate(expiries)
    }
    charges = {
        u: ChargeCredits(user_id=u, payload=ChargePayload(credits=15, reference="setup"))
        for group in groups
        for u in group
    }
    outcomes = (await apply_commands(engine, limited, list(grants.values()), REGISTRY)).outcomes
    outcomes += (await apply_commands(engine, limited, list(charges.values()), REGISTRY)).outcomes
    assert [o.status for o in outcomes] == ["applied"] * (len(grants) + len(charges))
    results = {o.command.id: o.result for o in outcomes}
    await asyncio.sleep(max(0.0, (expiries[0] - datetime.now(UTC)).total_seconds()) + 0.01)
    return [
        {
            "batches": [results[grants[u, n].id]["batchId"] for u in group for n in range(3)],
            "charges": [results[charges[u].id]["transactionId"] for u in group],
        }
        for group in groups
    ]


def _commands(steps: Sequence[Any], users: list[str], setup: dict[str, Any], base: datetime) -> list[Any]:
    """The commands of `steps` for one group of users; aimed from the steps alone, not the ledger."""
    commands: list[CommandEnvelope] = []
    held: dict[int, list[str]] = {}  # references each user's earlier steps held
    for step in steps:
        user = users[step.user]
        match step:
            case Grant():
                expires_at = base + timedelta(days=step.days or 30)
                payload: Any = GrantPayload(credits=step.credits, reason="eq", expires_at=expires_at)
                commands.append(GrantCredits(user_id=user, payload=payload))
            case Charge():
                payload = ChargePayload(credits=step.credits, reference="eq")
                commands.append(ChargeCredits(user_id=user, payload=payload))
            case Hold():
                held.setdefault(step.user, []).append(f"ref-{step.ref}")
                payload = HoldPayload(credits=step.credits, reference=f"ref-{step.ref}")
                commands.append(HoldCredits(user_id=user, payload=payload))
            case Capture() | Release():
                mine = held.get(step.user) or [f"ref-{step.pick % REFS}"]
                reference = mine[step.pick % len(mine)] if step.pick % 4 else f"ref-{step.pick % REFS}"
                if isinstance(step, Capture):
                    payload = CapturePayload(reference=reference, credits=step.credits)
                    commands.append(CaptureCredits(user_id=user, payload=payload))
                else:
                    commands.append(ReleaseCredits(user_id=user, payload=ReleasePayload(reference=reference)))
            case Refund():
                charges = setup["charges"]
                tx = charges[step.user] if step.pick % 4 else charges[step.pick % len(charges)]
                payload = RefundPayload(transaction_id=tx, credits=step.credits, reason="eq")
                commands.append(RefundCredits(user_id=user, payload=payload))
            case Expire():
                batches = setup["batches"]  # three per user, in user order
                own = batches[3 * step.user : 3 * step.user + 3]
                batch = own[step.pick % 3] if step.pick % 4 else batches[step.pick % len(batches)]
                commands.append(ExpireCredits(user_id=user, payload=ExpirePayload(batch_id=batch)))
    return commands


async def _ledger_of(engine: AsyncEngine, users: list[str]) -> list[Any]:
    """Balances and batches per user (by position), ids and refund expiries left out."""
    state = []
    async with engine.connect() as conn:
        for user in users:
            account = (
                await conn.execute(
                    text("SELECT available, held FROM accounts WHERE user_id = :u"), {"u": user}
                )
            ).one()
            batches = sorted(
                (r.source, r.amount, r.remaining, r.status, None if r.source == "REFUNDED" else r.expires_at)
                for r in await conn.execute(
                    text(
                        "SELECT source, amount, remaining, status, expires_at FROM credit_batches "
                        "WHERE user_id = :u"
                    ),
                    {"u": user},
                )
            )
            holds = sorted(
                tuple(r)
                for r in await conn.execute(
                    text("SELECT reference, credits, status FROM holds WHERE user_id = :u"), {"u": user}
                )
            )
            state.append((tuple(account), batches, holds))
    return state


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(steps=equivalence_steps)
async def test_one_batch_equals_one_command_per_batch(engine, settings, steps):
    """The set-based rounds of one batch end where one command per transaction ends.

    Two groups of users get the same setup and the same steps: one group's commands go in
    one batch, the other's one by one. Each user's commands keep their order either way;
    steps never cross users (no transfers), so the outcomes and ledgers must be equal.
    """
    limited = settings.model_copy(
        update={"max_credit_balance": MAX_BALANCE, "max_transaction_amount": MAX_AMOUNT}
    )
    base = datetime.now(UTC)
    tag = uuid.uuid4().hex[:10]
    together, apart = ([f"q-{tag}-{side}-{n}" for n in range(USERS)] for side in ("a", "b"))
    setups = await _set_up(engine, limited, [together, apart])  # the short-lived batches are due

    commands = _commands(steps, together, setups[0], base)
    batched = await apply_commands(engine, limited, commands, REGISTRY)
    one_by_one = [
        (await apply_commands(engine, limited, [command], REGISTRY)).outcomes[0]
        for command in _commands(steps, apart, setups[1], base)
    ]
    by_id = {o.command.id: o for o in batched.outcomes}
    assert len(by_id) == len(steps)
    in_input_order = [by_id[c.id] for c in commands]

    def seen(outcomes: list[Outcome]) -> list[tuple[Any, ...]]:
        return [(o.command.type, o.status, o.error_code) for o in outcomes]

    assert seen(in_input_order) == seen(one_by_one)
    for outcome in one_by_one:
        event(f"{outcome.command.type} {outcome.error_code or outcome.status}")  # type: ignore[attr-defined]
    assert await _ledger_of(engine, together) == await _ledger_of(engine, apart)
    assert [str(d) for d in await reconcile(engine)] == []

