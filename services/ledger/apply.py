"""Apply a batch of commands in one DB transaction: the ledger worker's core.

Order of work, all inside one transaction:
1. claim each command id in `processed_commands`; ids already there (redelivery, a
   copy applied by another worker) are skipped;
2. split the rest into rounds so a user appears at most once per round, keeping each
   user's commands in their arrival (partition) order;
3. per round, the types with a set-based handler (charges, goodwill grants, holds) go through
   it, a statement per step for all of them, other commands each in a savepoint; a
   refusal becomes a stored rejection, never a failed batch;
4. record every outcome in `processed_commands` and its events in the outbox.
The caller commits, and only then acknowledges the Kafka offsets. The handlers come
from the registry the caller passes (services/bootstrap.py builds it), so the ledger
needs no import of the domains whose commands it applies.
"""

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.commands import (
    CommandEnvelope,
    TransferCredits,
    command_fingerprint,
    means_another,
)
from services.db import unit_of_work
from services.errors import IdempotencyKeyReused, PaymentError
from services.ledger import account_store, command_store, outbox_store, reply_store
from services.ledger.command_store import Processed
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import rejected
from services.ledger.handlers import APPLIED
from services.ledger.outbox_store import OutboxRow
from services.ledger.registry import CommandRegistry
from services.settings import Settings

log = logging.getLogger(__name__)
REJECTED = "rejected"
TRANSIENT_ERRORS = (
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    ConnectionError,
    OSError,
)


@dataclass
class BatchReport:
    """What one batch did; duplicates are commands already processed before, conflicts
    are commands whose id was already used for another command (refused, dead-lettered)."""

    outcomes: list[Outcome] = field(default_factory=list)
    duplicates: int = 0
    conflicts: list[Outcome] = field(default_factory=list)

    @property
    def applied(self) -> int:
        return sum(1 for o in self.outcomes if o.status == APPLIED)

    @property
    def rejected(self) -> int:
        return sum(1 for o in self.outcomes if o.status == REJECTED)

    @property
    def dead_letters(self) -> list[Outcome]:
        return [o for o in [*self.outcomes, *self.conflicts] if o.dead_letter_reason]


def is_transient(error: BaseException) -> bool:
    """A failure of the connection or of concurrency, worth retrying the whole batch."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    inner = getattr(cause, "__cause__", None)
    return isinstance(cause, TRANSIENT_ERRORS) or isinstance(inner, TRANSIENT_ERRORS) or (
        isinstance(error, DBAPIError) and error.connection_invalidated
    )


def users_touched(command: CommandEnvelope) -> tuple[str, ...]:
    """Every account a command changes: a transfer changes its recipient's too."""
    if isinstance(command, TransferCredits):
        return (command.user_id, command.payload.to_user_id)
    return (command.user_id,)


def split_rounds(commands: Sequence[CommandEnvelope]) -> list[list[CommandEnvelope]]:
    """Rounds in which each account is touched at most once, in arrival order per account.

    A command goes to the round after the last one that touched any of its accounts,
    so a charge of B that arrives after a transfer A→B is applied after it.
    """
    rounds: list[list[CommandEnvelope]] = []
    next_round: dict[str, int] = {}
    for command in commands:
        users = users_touched(command)
        index = max(next_round.get(user, 0) for user in users)
        for user in users:
            next_round[user] = index + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(command)
    return rounds


def _rejection(command: CommandEnvelope, error: PaymentError) -> Outcome:
    return Outcome(
        command=command,
        status=REJECTED,
        result=error.as_body(),
        events=[rejected(command, error)],
        error_code=error.code,
    )


def _failure(command: CommandEnvelope, error: BaseException) -> Outcome:
    """A command that broke a handler: rejected for good and sent to the DLQ."""
    failure = PaymentError("the command could not be applied", error=type(error).__name__)
    outcome = _rejection(command, failure)
    outcome.dead_letter_reason = f"{type(error).__name__}: {str(error)[:500]}"
    return outcome


def _conflict(command: CommandEnvelope, first: tuple[str, str, str | None]) -> Outcome:
    """The id was first used for another command: nothing is applied or stored under it
    (the id is the first command's), the message goes to the dead-letter topic."""
    what = [name for name, mine, theirs in (
        ("type", command.type, first[0]),  # type: ignore[attr-defined]
        ("user", command.user_id, first[1]),
    ) if mine != theirs] or ["payload"]
    error = IdempotencyKeyReused(
        "this command id was already used for another command", differs=what
    )
    outcome = _rejection(command, error)
    outcome.events = []  # the id's events belong to the first command
    outcome.dead_letter_reason = f"{error.code} command id reused with another {'/'.join(what)}"
    return outcome


async def _apply_one(
    ctx: LedgerContext, registry: CommandRegistry, command: CommandEnvelope
) -> Outcome:
    savepoint = await ctx.conn.begin_nested()
    try:
        outcome = await registry.handlers[command.type](ctx, command)  # type: ignore[attr-defined]
    except PaymentError as error:
        await savepoint.rollback()
        return _rejection(command, error)
    except Exception as error:
        if is_transient(error):
            raise
        await savepoint.rollback()
        log.exception("command %s failed", command.id)
        return _failure(command, error)
    await savepoint.commit()
    return outcome


async def _apply_set(
    ctx: LedgerContext, registry: CommandRegistry, type_: str, commands: list[CommandEnvelope]
) -> list[Outcome]:
    """A round's commands of one type through its set-based handler; if the set fails
    for another reason than a refusal, each command alone in its own savepoint."""
    savepoint = await ctx.conn.begin_nested()
    try:
        results = await registry.set_handlers[type_](ctx, commands)
    except Exception as error:
        if is_transient(error):
            raise
        # Something in the set went wrong: isolate the culprit one command at a time.
        await savepoint.rollback()
        log.warning("set-based %s failed (%s); applying one by one", type_, type(error).__name__)
        return [await _apply_one(ctx, registry, command) for command in commands]
    await savepoint.commit()
    return [
        _rejection(c, r) if isinstance(r, PaymentError) else r
        for c in commands
        for r in (results[c.id],)
    ]


def processed_of(outcomes: Sequence[Outcome]) -> list[Processed]:
    """The `processed_commands` rows that store these outcomes."""
    return [(o.command.id, o.status, o.error_code, o.result) for o in outcomes]


def outbox_of(
    outcomes: Sequence[Outcome], topic: str, trace_contexts: Mapping[uuid.UUID, str] | None = None
) -> list[OutboxRow]:
    """The outbox rows of these outcomes' events, in the order they happened, each with
    the trace context (`traceparent`) of its command, when it had one."""
    traces = trace_contexts or {}
    return [
        (event.id, o.command.id, topic, event.user_id, event.type, event.model_dump_json(),  # type: ignore[attr-defined]
         traces.get(o.command.id))
        for o in outcomes
        for event in o.events
    ]


async def _record(
    ctx: LedgerContext, outcomes: list[Outcome], trace_contexts: Mapping[uuid.UUID, str] | None
) -> None:
    await command_store.record_processed(ctx.conn, processed_of(outcomes))
    await outbox_store.insert_outbox(
        ctx.conn, outbox_of(outcomes, ctx.settings.events_topic, trace_contexts)
    )


async def apply_in(
    conn: AsyncConnection,
    settings: Settings,
    commands: Sequence[CommandEnvelope],
    registry: CommandRegistry,
    trace_contexts: Mapping[uuid.UUID, str] | None = None,
) -> BatchReport:
    """Apply `commands` on an open transaction (no commit) with `registry`'s handlers;
    `trace_contexts` (command id -> traceparent) goes with their events to the outbox."""
    report = BatchReport()
    unique: dict[uuid.UUID, CommandEnvelope] = {}
    prints: dict[uuid.UUID, str] = {}
    for command in commands:
        fingerprint = command_fingerprint(command)
        if command.id not in unique:
            unique[command.id], prints[command.id] = command, fingerprint
        elif prints[command.id] != fingerprint:
            kept = unique[command.id]
            report.conflicts.append(
                _conflict(command, (kept.type, kept.user_id, prints[kept.id]))  # type: ignore[attr-defined]
            )
    claimed = await command_store.claim_commands(
        conn, [(c.id, c.type, c.user_id, prints[c.id]) for c in unique.values()]  # type: ignore[attr-defined]
    )
    fresh = [c for c in unique.values() if c.id in claimed]
    taken = [c for c in unique.values() if c.id not in claimed]
    firsts = await command_store.claims_of(conn, [c.id for c in taken])
    for command in taken:
        first = firsts.get(command.id)
        if first is not None and means_another(first, command, prints[command.id]):
            report.conflicts.append(_conflict(command, first))
    report.duplicates = len(commands) - len(fresh) - len(report.conflicts)
    if not fresh:
        return report
    ctx = LedgerContext(conn, settings, await account_store.system_accounts(conn), datetime.now(UTC),
                        return_claims=registry.return_claims)
    for round_ in split_rounds(fresh):
        sets: dict[str, list[CommandEnvelope]] = {}
        singles: list[CommandEnvelope] = []
        for command in round_:
            kind = command.type  # type: ignore[attr-defined]
            (sets.setdefault(kind, []) if kind in registry.set_handlers else singles).append(command)
        outcomes: list[Outcome] = []
        for kind, of_kind in sets.items():
            outcomes += await _apply_set(ctx, registry, kind, of_kind)
        for command in singles:
            outcomes.append(await _apply_one(ctx, registry, command))
        await _record(ctx, outcomes, trace_contexts)
        report.outcomes += outcomes
    return report


async def apply_commands(
    engine: AsyncEngine,
    settings: Settings,
    commands: Sequence[CommandEnvelope],
    registry: CommandRegistry,
    trace_contexts: Mapping[uuid.UUID, str] | None = None,
) -> BatchReport:
    """Apply and commit one batch; raises (nothing written) on a transient failure.

    `registry` comes from services/bootstrap.py (built once by the caller, not per batch).
    """
    async with unit_of_work(engine) as conn:
        report = await apply_in(conn, settings, commands, registry, trace_contexts)
        await conn.execute(outbox_store.NOTIFY_OUTBOX)
        # Every id of the batch has a stored answer now (duplicates had one already):
        # wake the HTTP requests waiting for them, at commit.
        await reply_store.notify_answered(conn, list(dict.fromkeys(c.id for c in commands)))
        await conn.commit()
    return report
