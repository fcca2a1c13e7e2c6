"""What became of a published command: applied (with the balance after it) or rejected
(with its PAY code), learned from `payment.events`.

The ledger writes a command's events in the same transaction as its postings, and the
relay publishes them keyed by user, so the answer to a charge is on `payment.events`
within milliseconds of the commit. The watcher reads that topic from its end with its own
group-less consumer (it must never take partitions away from the caller's consumer
groups) and settles the futures of the commands this process is waiting for.

What the events cannot answer, `CommandHandle` asks `GET /payment/commands/{id}`:
a command applied before this process started watching (a retry after a crash) or one
the ledger answers without events (releasing a hold already released).
"""

import asyncio
import contextlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from pika_payment_client.broker import BrokerSettings
from pika_payment_client.contracts.api import CommandStatusRead
from pika_payment_client.contracts.commands import CommandEnvelope, command_fingerprint
from pika_payment_client.contracts.events import (
    BalanceChanged,
    CommandRejected,
    EventEnvelope,
    LedgerFactPayload,
    event_adapter,
)

log = logging.getLogger("pika_payment_client.outcomes")
MAX_WAITING = 100_000


@dataclass(frozen=True)
class Balance:
    """A user's credits right after a command: spendable, held, and their sum."""

    available: int
    held: int
    total: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> "Balance | None":
        try:
            values = (body["available"], body["held"], body["total"])
        except (KeyError, TypeError):
            return None
        if not all(type(value) is int for value in values):
            return None
        return cls(*values)


@dataclass(frozen=True)
class Outcome:
    """The ledger's answer to one command.

    `applied`: `balance` is the user's balance right after the command's own change,
    `transaction_id` its ledger transaction and `hold_id` the hold it opened or settled.
    `rejected`: `code` is the PAY code (PAY001 insufficient credits, PAY014 hold not open,
    ...; docs/api.md lists them), with the service's `message` and `details`.
    `learned_from` says whether the answer came from `payment.events` or from
    `GET /payment/commands/{id}`.
    """

    command_id: uuid.UUID
    status: Literal["applied", "rejected"]
    balance: Balance | None = None
    transaction_id: uuid.UUID | None = None
    hold_id: uuid.UUID | None = None
    code: str | None = None
    message: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    learned_from: Literal["events", "status"] = "events"

    @property
    def applied(self) -> bool:
        return self.status == "applied"

    @classmethod
    def another_command(cls, command_id: uuid.UUID, learned_from: Literal["events", "status"]) -> "Outcome":
        """The id was first used for another command: the ledger refused this one (PAY012,
        dead-lettered) and what it stored or announced under the id is not its answer."""
        return cls(command_id, "rejected", code="PAY012",
                   message="this command id was already used for another command",
                   learned_from=learned_from)

    @classmethod
    def from_status(
        cls, status: CommandStatusRead, command: CommandEnvelope | None = None
    ) -> "Outcome | None":
        """The stored result of `GET /payment/commands/{id}`; None while it is pending.

        With the `command` that was published, the stored record must be for that very
        command (same type and fingerprint), else the answer is PAY012.
        """
        if command is not None and status.status != "pending" and (
            status.type != getattr(command, "type", None)
            or (status.fingerprint is not None and status.fingerprint != command_fingerprint(command))
        ):
            return cls.another_command(status.command_id, "status")
        if status.status == "applied":
            result = status.result or {}
            return cls(
                command_id=status.command_id,
                status="applied",
                balance=Balance.of(result.get("balance") or {}),
                transaction_id=_uuid(result.get("transactionId")),
                hold_id=_uuid(result.get("holdId")),
                learned_from="status",
            )
        if status.status == "rejected" and status.error is not None:
            return cls(
                command_id=status.command_id,
                status="rejected",
                code=status.error.code,
                message=status.error.message,
                details=status.error.details,
                learned_from="status",
            )
        return None


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


@dataclass
class _Waiting:
    future: "asyncio.Future[Outcome]"
    command: CommandEnvelope | None = None
    transaction_id: uuid.UUID | None = None
    hold_id: uuid.UUID | None = None


class OutcomeWatcher:
    """Settles the outcome of the commands this process published, from `payment.events`.

    `expect(id)` must be called before the command is published: the watcher reads from
    the position it had when it started, never from the past.
    """

    def __init__(self, broker: BrokerSettings, *, poll_ms: int = 200) -> None:
        self.broker = broker
        self.poll_ms = poll_ms
        # Oldest first: a command whose outcome never comes (dead-lettered, say) is dropped
        # once MAX_WAITING newer ones wait, rather than kept forever.
        self._waiting: OrderedDict[uuid.UUID, _Waiting] = OrderedDict()
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 30.0) -> None:
        """Join the events topic at its end, and only return once the position of every
        partition is fixed: an event committed after this returns is seen."""
        consumer = AIOKafkaConsumer(
            self.broker.events_topic,
            **self.broker.aiokafka_options(),
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            async with asyncio.timeout(timeout):
                await _assigned(consumer)
                for partition in consumer.assignment():
                    await consumer.position(partition)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name="pika-payment-outcomes")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        self._waiting.clear()  # their callers fall back to asking the HTTP API, or time out

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def expect(
        self, command_id: uuid.UUID, command: CommandEnvelope | None = None
    ) -> "asyncio.Future[Outcome]":
        """The future of `command_id`'s outcome (the same one for every caller). With the
        `command`, events that contradict it (another amount or reference under the same
        id) settle it as PAY012 instead of as its answer."""
        waiting = self._waiting.get(command_id)
        if waiting is None:
            waiting = _Waiting(asyncio.get_running_loop().create_future(), command)
            self._waiting[command_id] = waiting
            while len(self._waiting) > MAX_WAITING:
                self._waiting.popitem(last=False)
        return waiting.future

    def forget(self, command_id: uuid.UUID) -> None:
        """Stop waiting for `command_id` (its caller gave up or learned it elsewhere)."""
        self._waiting.pop(command_id, None)

    async def _run(self) -> None:
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=self.poll_ms)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the broker away for a moment: the consumer reconnects
                log.warning("reading payment.events failed (%s); retrying", type(error).__name__)
                await asyncio.sleep(1.0)
                continue
            for records in batch.values():
                for record in records:
                    self.offer(record.value)

    def offer(self, raw: bytes | None) -> None:
        """One record of `payment.events`: settles a waiting command when it answers one."""
        if not self._waiting or not raw:
            return
        try:
            command_id = uuid.UUID(str(json.loads(raw).get("commandId")))
        except (ValueError, AttributeError, TypeError):
            return
        waiting = self._waiting.get(command_id)
        if waiting is None or waiting.future.done():
            return
        try:
            event = event_adapter.validate_json(raw)
        except ValidationError:
            log.warning("an event of command %s does not match this client's contract", command_id)
            return
        outcome = _settles(command_id, waiting, event)
        if outcome is not None:
            waiting.future.set_result(outcome)
            self._waiting.pop(command_id, None)


async def _assigned(consumer: Any) -> None:
    """Until a group-less consumer knows the topic's partitions (the metadata fetch)."""
    for _ in iter(int, 1):
        if consumer.assignment():
            return
        await asyncio.sleep(0.05)


# The fact each public command announces when it is applied.
FACT_OF = {
    "credits.charge": "credits.charged",
    "credits.hold": "credits.held",
    "credits.capture": "credits.charged",
    "credits.release": "credits.released",
    "credits.refund": "credits.refunded",
}


def contradicts(command: CommandEnvelope, event: EventEnvelope, first_fact: bool) -> bool:
    """Whether `event`, announced under `command`'s id, is about another command: another
    user, type, amount or reference. Two services publishing different commands under
    one id (the same booking charged twice with different amounts, say) must not take
    the first one's outcome for theirs. Only a command's first fact tells what it was:
    later ones (a partial capture's release, credits a refunded purchase claims back)
    and balances say nothing of it."""
    kind = getattr(command, "type", "")
    if event.user_id != command.user_id:
        return True
    if isinstance(event, CommandRejected):
        return str(event.type) != f"{kind}.rejected"
    fact = getattr(event, "payload", None)
    if not first_fact or not isinstance(fact, LedgerFactPayload):
        return False
    if getattr(event, "type", None) != FACT_OF.get(kind):
        return True
    payload = getattr(command, "payload", None)
    credits = getattr(payload, "credits", None)
    reference = getattr(payload, "reference", None)
    return (credits is not None and fact.credits != credits) or (
        reference is not None and fact.reference != reference
    )


def _settles(command_id: uuid.UUID, waiting: _Waiting, event: EventEnvelope) -> Outcome | None:
    """The outcome `event` gives, or None when it is only part of one (a command's fact
    comes before its balance: the fact's transaction and hold are kept for it)."""
    first_fact = waiting.transaction_id is None
    if waiting.command is not None and contradicts(waiting.command, event, first_fact):
        return Outcome.another_command(command_id, "events")
    if isinstance(event, CommandRejected):
        return Outcome(command_id, "rejected", code=event.payload.code,
                       message=event.payload.message, details=event.payload.details)
    if isinstance(event, BalanceChanged):
        payload = event.payload
        return Outcome(
            command_id,
            "applied",
            balance=Balance(payload.available, payload.held, payload.total),
            transaction_id=waiting.transaction_id or payload.transaction_id,
            hold_id=waiting.hold_id,
        )
    fact = getattr(event, "payload", None)
    if isinstance(fact, LedgerFactPayload) and waiting.transaction_id is None:
        waiting.transaction_id = fact.transaction_id
        waiting.hold_id = fact.hold_id
    return None
