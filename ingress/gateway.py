"""Publishing commands from HTTP and waiting for the ledger's answer (docs/architecture.md, "The flow").

The caller waits up to PAYMENT_REPLY_TIMEOUT for the command's stored result; after
that it gets 202 with the status URL. It does not poll: the ledger worker NOTIFYs the
ids it answered and the request wakes (ingress.reply_waiters), then reads its stored
answer once; it also reads it at the deadline and once a second in case a notification
was lost. A write that waits costs at most three statements: the status before
publishing, its evidence where it has one, the status once woken.

A command published here is marked pending in Redis with its owner, so
`GET /payment/commands/{id}` can tell "pending" from "unknown" and refuse other users.
"""

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from ingress.reply_waiters import SAFETY_RECHECK_SECONDS, ReplyWaiters
from schemas.commands import CommandEnvelope, means_another
from services.db import ReadPool, UnitOfWork
from services.errors import DependencyUnavailable, IdempotencyKeyReused, PaymentError, status_of
from services.evidence.use_cases import record_command_evidence
from services.evidence.zones import Evidence
from services.ledger.use_cases import find_command_status
from services.settings import Settings
from services.tracing import trace_headers

# Records a command's evidence (None: it needs none) and what goes with it, committed
# before the command is published.
Recorder = Callable[[CommandEnvelope, Evidence | None], Awaitable[None]]
PENDING_TTL = 86_400


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | list[Any]  # a list for the few routes that answer with one
    headers: dict[str, str]


def pending_key(command_id: uuid.UUID) -> str:
    return f"pika:cmd:{command_id}"


def reply_for(stored: dict[str, Any], command: CommandEnvelope | None = None) -> Reply:
    """The stored answer; refused (PAY012) when the id was used for another command."""
    first = (stored["type"], stored["user_id"], stored.get("fingerprint"))
    if command is not None and means_another(first, command):
        return error_reply(IdempotencyKeyReused(
            "this command id was already used for another command",
            commandId=str(command.id),
        ))
    if stored["status"] == "applied":
        return Reply(200, {"commandId": str(stored["command_id"]), **stored["result"]}, {})
    return Reply(status_of(stored["error_code"]), stored["result"], {})


class CommandGateway:
    def __init__(
        self,
        producer: AIOKafkaProducer,
        engine: AsyncEngine,
        redis: Redis,
        settings: Settings,
        waiters: ReplyWaiters,
        reads: ReadPool | None = None,
    ) -> None:
        self.waiters = waiters
        self.producer = producer
        self.engine = engine
        self.uow = UnitOfWork(engine, reads)
        self.redis = redis
        self.settings = settings

    async def publish(
        self,
        command: CommandEnvelope,
        evidence: Evidence | None = None,
        record: Recorder | None = None,
    ) -> None:
        """Record `evidence` (when given), mark the command pending, publish it.

        `record`, when given, records instead, in one transaction of its own: the
        evidence together with whatever else must be on record before the command is
        published (an admin action's audit row).

        The ingress is in the payment zone: everything it publishes goes to the internal
        command topic, so one user's commands from HTTP and webhooks keep their order.
        """
        if record is not None:
            await record(command, evidence)
        elif evidence is not None:
            await record_command_evidence(self.uow, command, evidence)
        try:
            await self.redis.set(pending_key(command.id), command.user_id, ex=PENDING_TTL)
        except RedisError as error:
            raise DependencyUnavailable("redis is unavailable") from error
        try:
            await self.producer.send_and_wait(
                self.settings.internal_commands_topic,
                value=command.model_dump_json().encode(),
                key=command.user_id.encode(),
                # The request span's context (traceparent), when tracing is on.
                headers=[("content-type", b"application/json"), *trace_headers()],
            )
        except Exception as error:
            raise DependencyUnavailable("the command broker is unavailable") from error

    async def stored(self, command_id: uuid.UUID) -> dict[str, Any] | None:
        return await find_command_status(self.uow, command_id)

    async def submit(
        self,
        command: CommandEnvelope,
        evidence: Evidence | None = None,
        timeout: float | None = None,
        record: Recorder | None = None,
    ) -> Reply:
        """Publish (unless already processed) and wait for the result or time out."""
        existing = await self.stored(command.id)
        if existing:
            return reply_for(existing, command)
        wait = self.settings.payment_reply_timeout if timeout is None else timeout
        with self.waiters.waiter(command.id) as woken:
            await self.publish(command, evidence, record)
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(left, SAFETY_RECHECK_SECONDS))
                woken.clear()
                found = await self.stored(command.id)
                if found:
                    return reply_for(found, command)
        location = f"/payment/commands/{command.id}"
        return Reply(
            202,
            {"commandId": str(command.id), "status": "pending", "statusUrl": location},
            {"Location": location},
        )

    async def pending_owner(self, command_id: uuid.UUID) -> str | None:
        try:
            owner = await self.redis.get(pending_key(command_id))
        except RedisError:
            return None
        return owner.decode() if isinstance(owner, bytes) else owner


def error_reply(error: PaymentError) -> Reply:
    return Reply(error.status, error.as_body(), {})
