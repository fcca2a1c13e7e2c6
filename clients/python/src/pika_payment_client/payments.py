"""Charging credits from a platform service: publish the command, await its outcome.

Each call takes the business reference it is about (the booking id) and derives the
command id from it: `charge(..., reference="booking-123")` is the command
`command_id_for("booking-123", "charge")` every time. A booking service that crashed
after publishing and publishes again on restart sends the same command, and the ledger
applies it once. A second, different charge for the same booking needs its own `key`
(e.g. `key="late-fee"`): the same id with another amount is refused by the ledger
(dead-lettered as PAY012), never applied as the first.

Commands go to `payment.commands` keyed by user id, so one user's commands keep their
order. Only the public zone's types can be built here (charge, hold, capture, release,
refund of a usage): the ledger dead-letters anything else a platform service publishes.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from pika_payment_client.broker import BrokerSettings
from pika_payment_client.contracts.commands import (
    CaptureCredits,
    ChargeCredits,
    CommandEnvelope,
    HoldCredits,
    RefundCredits,
    ReleaseCredits,
    command_id_for,
)
from pika_payment_client.errors import InvalidCommand, OutcomeUnknown, PaymentApiError
from pika_payment_client.http import PaymentsHttp
from pika_payment_client.outcomes import Outcome, OutcomeWatcher

log = logging.getLogger("pika_payment_client.payments")
PUBLIC_COMMANDS: tuple[type[CommandEnvelope], ...] = (
    ChargeCredits, HoldCredits, CaptureCredits, ReleaseCredits, RefundCredits,
)


def command_id(reference: str, *parts: str) -> uuid.UUID:
    """The id of `reference`'s command named by `parts` (its action, then any key):
    UUIDv5, the service's own derivation (docs/kafka.md, "Envelope and ordering")."""
    return command_id_for(reference, *parts)


class CommandHandle:
    """A published command: its id, and a way to wait for what the ledger made of it."""

    def __init__(
        self, command: CommandEnvelope, payments: "Payments", future: "asyncio.Future[Outcome] | None"
    ) -> None:
        self.command = command
        self._payments = payments
        self._future = future

    @property
    def command_id(self) -> uuid.UUID:
        return self.command.id

    async def outcome(self, timeout: float = 10.0) -> Outcome:
        """Applied (with the balance after it) or rejected (with its PAY code).

        Answered from `payment.events` as soon as the ledger's events arrive. When they
        do not within `fallback_after` seconds (the command was applied before this
        process started watching, or it answers without events), and an HTTP client
        was given, `GET /payment/commands/{id}` is asked, then again every second.
        Raises OutcomeUnknown after `timeout`: the command may still be applied later,
        and publishing it again is safe.
        """
        return await self._payments._outcome_of(self.command_id, timeout, self._future, self.command)

    def __repr__(self) -> str:
        kind = getattr(self.command, "type", "command")
        return f"CommandHandle({kind} {self.command_id} for {self.command.user_id})"


class Payments:
    """Publishes the public commands of a platform service and answers their outcome.

    ```python
    async with Payments(BrokerSettings("kafka:9092"), source="booking-service") as payments:
        handle = await payments.charge("u-42", 3, reference="booking-123")
        outcome = await handle.outcome(timeout=5)
    ```

    `http` (a PaymentsHttp with a service token) is the fallback that answers a command
    whose events this process did not see, and checks the contract version at start.
    """

    def __init__(
        self,
        broker: BrokerSettings,
        *,
        source: str,
        http: PaymentsHttp | None = None,
        fallback_after: float = 1.0,
        watch_outcomes: bool = True,
        check_contract: bool = True,
    ) -> None:
        if not source:
            raise ValueError("source names the publishing service; it is empty")
        self.broker = broker
        self.source = source
        self.http = http
        self.fallback_after = fallback_after
        self._producer: Any = None
        self._watcher = OutcomeWatcher(broker) if watch_outcomes else None
        self._check_contract = check_contract

    async def start(self) -> None:
        """Connect the producer and start watching outcomes (from now on).

        With `http`, the served contracts are compared with this client's first: another
        `schemaVersion` raises SchemaVersionMismatch before anything is published, and
        other differences (a service newer than the client) are logged.
        """
        if self.http is not None and self._check_contract:
            check = await self.http.check_contract()
            if not check.identical:
                log.warning("the service's contracts differ from this client's for %s; "
                            "update pika-payment-client", ", ".join(check.differing + check.missing))
        producer = AIOKafkaProducer(**self.broker.aiokafka_options(), acks="all")
        await producer.start()
        self._producer = producer
        if self._watcher is not None:
            try:
                await self._watcher.start()
            except BaseException:
                await producer.stop()
                self._producer = None
                raise

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> "Payments":
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # The public zone's commands

    async def charge(
        self, user_id: str, credits: int, *, reference: str,
        metadata: Mapping[str, Any] | None = None, key: str | None = None,
    ) -> CommandHandle:
        """Spend `credits` now (earliest-expiring batches first); PAY001 when short."""
        return await self._send(ChargeCredits, user_id, reference, ("charge",), key,
                                {"credits": credits, "reference": reference,
                                 "metadata": dict(metadata or {})})

    async def hold(
        self, user_id: str, credits: int, *, reference: str, ttl_seconds: int | None = None,
        metadata: Mapping[str, Any] | None = None, key: str | None = None,
    ) -> CommandHandle:
        """Reserve `credits` for `reference` (they leave `available`, show as `held`) until
        captured, released, or expired after `ttl_seconds` (the service's default: 900)."""
        payload: dict[str, Any] = {"credits": credits, "reference": reference,
                                   "metadata": dict(metadata or {})}
        if ttl_seconds is not None:
            payload["ttl_seconds"] = ttl_seconds
        return await self._send(HoldCredits, user_id, reference, ("hold",), key, payload)

    async def capture(
        self, user_id: str, *, reference: str, credits: int | None = None,
        metadata: Mapping[str, Any] | None = None, key: str | None = None,
    ) -> CommandHandle:
        """Charge the hold of `reference`: all of it, or `credits` of it and release the rest."""
        payload: dict[str, Any] = {"reference": reference, "metadata": dict(metadata or {})}
        if credits is not None:
            payload["credits"] = credits
        return await self._send(CaptureCredits, user_id, reference, ("capture",), key, payload)

    async def release(
        self, user_id: str, *, reference: str, reason: str | None = None, key: str | None = None,
    ) -> CommandHandle:
        """Give the hold of `reference` back to the batches it came from. A hold no longer
        open (captured, released) is refused with PAY014 and nothing moves."""
        payload: dict[str, Any] = {"reference": reference}
        if reason is not None:
            payload["reason"] = reason
        return await self._send(ReleaseCredits, user_id, reference, ("release",), key, payload)

    async def refund_usage(
        self, user_id: str, *, transaction_id: uuid.UUID, reason: str, reference: str,
        credits: int | None = None, key: str | None = None,
    ) -> CommandHandle:
        """Return the credits a CREDIT_USAGE transaction spent (all that is left of it, or
        `credits`) to their batches. `reference` is the booking it belonged to."""
        payload: dict[str, Any] = {"transaction_id": transaction_id, "reason": reason}
        if credits is not None:
            payload["credits"] = credits
        return await self._send(RefundCredits, user_id, reference, ("refund", str(transaction_id)),
                                key, payload)

    async def publish(self, command: CommandEnvelope) -> CommandHandle:
        """Publish a command built by the caller (one of the public zone's types)."""
        if not isinstance(command, PUBLIC_COMMANDS):
            raise InvalidCommand(
                f"{command.__class__.__name__} is not published by platform services: only "
                + ", ".join(model.__name__ for model in PUBLIC_COMMANDS)
            )
        if self._producer is None:
            raise RuntimeError("Payments is not started: use `async with Payments(...)` or start()")
        future = self._watcher.expect(command.id, command) if self._watcher is not None else None
        await self._producer.send_and_wait(
            self.broker.commands_topic,
            value=command.model_dump_json().encode(),
            key=command.user_id.encode(),
        )
        return CommandHandle(command, self, future)

    # Outcomes

    async def outcome(self, command_id: uuid.UUID, timeout: float = 10.0) -> Outcome:
        """The outcome of the command stored under `command_id`, published earlier by this
        or another process. Without the command itself it cannot be checked that the id
        was not first used for another one: prefer `CommandHandle.outcome`."""
        future = self._watcher.expect(command_id) if self._watcher is not None else None
        return await self._outcome_of(command_id, timeout, future)

    async def _outcome_of(
        self,
        command_id: uuid.UUID,
        timeout: float,
        future: "asyncio.Future[Outcome] | None",
        command: CommandEnvelope | None = None,
    ) -> Outcome:
        deadline = time.monotonic() + timeout
        if future is not None and future.done():
            if not future.cancelled():
                return future.result()
            future = None
        if self._watcher is None or not self._watcher.running:
            future = None
        next_ask = time.monotonic() + (self.fallback_after if future is not None else 0.0)
        if future is None and self.http is None:
            raise RuntimeError("no way to learn outcomes: the watcher is off and no http was given")
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise OutcomeUnknown(command_id, timeout)
            wake = min(deadline, next_ask) if self.http is not None else deadline
            if future is not None:
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), max(0.0, wake - now))
            else:
                await asyncio.sleep(max(0.0, wake - now))
            if self.http is not None and time.monotonic() >= next_ask:
                answered = await self._ask(command_id, command)
                if answered is not None:
                    if self._watcher is not None:
                        self._watcher.forget(command_id)
                    return answered
                next_ask = time.monotonic() + 1.0

    async def _ask(self, command_id: uuid.UUID, command: CommandEnvelope | None) -> Outcome | None:
        assert self.http is not None
        try:
            return Outcome.from_status(await self.http.command_status(command_id), command)
        except PaymentApiError as error:
            if error.code == "PAY008":  # not applied yet: the ledger has no record of it
                return None
            raise

    async def _send(
        self,
        model: type[CommandEnvelope],
        user_id: str,
        reference: str,
        action: tuple[str, ...],
        key: str | None,
        payload: dict[str, Any],
    ) -> CommandHandle:
        parts = action if key is None else (*action, key)
        try:
            command = model.model_validate({
                "id": command_id(reference, *parts),
                "user_id": user_id,
                "source": self.source,
                "correlation_id": command_id(reference),
                "payload": payload,
            })
        except ValidationError as error:
            raise InvalidCommand(str(error)) from error
        return await self.publish(command)
