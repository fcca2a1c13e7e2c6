"""The command mix a scenario runs under, published at a steady rate while faults strike."""

import asyncio
import heapq
import itertools
import math
import time
import uuid
from collections import Counter, deque
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from devtools.faults.context import Context
from devtools.faults.database import DB_ERRORS, ReconnectingDb
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
    RefundCredits,
    RefundPayload,
    ReleaseCredits,
    ReleasePayload,
)
from services.evidence.store import RECORD_ARRAYS, RECORD_COLUMNS, evidence_rows
from services.evidence.zones import Evidence, needs_evidence

TICK = 0.02
FAULT_EVIDENCE = Evidence("admin_request", "fault suite", "pika-payment faults")


class Load:
    """A steady mix of commands for one scenario's users, keyed by user id.

    Refunds need the CREDIT_USAGE transaction of an applied charge or capture: a poller
    reads them back from `processed_commands` (`result->>'transactionId'`) as they land.
    With `twice`, every command is published a second time (adjacent, delayed behind the
    user's later commands, or on another partition so the copy may be applied first).
    """

    WEIGHTS = (("grant", 22), ("charge", 40), ("hold", 12), ("capture", 10), ("release", 3),
               ("refund", 13))

    def __init__(self, ctx: Context, key: str, twice: bool = False) -> None:
        self.ctx = ctx
        self.rng = ctx.rng
        self.twice = twice
        # The mix holds grants, so the load publishes as the payment zone does: on the
        # internal topic, each grant's evidence recorded first (see `with_evidence`).
        self.topic = ctx.settings.internal_commands_topic
        self.partitions = list(range(ctx.settings.kafka_command_partitions))
        self.users = [f"{key}-u{i:03d}" for i in range(ctx.plan.users)]
        self.sent: dict[uuid.UUID, str] = {}
        self.messages = 0
        self.copies: Counter[str] = Counter()
        self.holds: dict[str, list[tuple[str, int]]] = {}
        self.usage_pending: dict[uuid.UUID, str] = {}
        self.refundable: list[tuple[str, uuid.UUID, int]] = []
        self.delayed: list[tuple[float, int, bytes, bytes, int | None]] = []
        self.seq = 0
        self.grants_left_out = 0
        self.evidence_db = ReconnectingDb(ctx.db.url)
        self.tiebreak = itertools.count()
        self.handled_before = ctx.fleet.worker_counter("payment_commands_total")
        self.kinds, weights = zip(*self.WEIGHTS, strict=True)
        self.weights = list(weights)
        # Everyone starts with a grant, so charges are not all refused at first.
        self.queue: deque[CommandEnvelope] = deque(self.grant(u, 1000) for u in self.users)

    # -- command builders -------------------------------------------------------------
    def grant(self, user: str, credits: int) -> GrantCredits:
        return GrantCredits(user_id=user, source="faults",
                            payload=GrantPayload(credits=credits, reason="fault suite"))

    def next_command(self) -> CommandEnvelope:
        rng, user = self.rng, self.rng.choice(self.users)
        self.seq += 1
        kind = rng.choices(self.kinds, self.weights)[0]
        holds = self.holds.setdefault(user, [])
        if kind in ("capture", "release") and holds:
            reference, held = holds.pop(rng.randrange(len(holds)))
            if kind == "release":
                return ReleaseCredits(user_id=user, source="faults",
                                      payload=ReleasePayload(reference=reference, reason="faults"))
            partial = rng.randint(1, held - 1) if held > 1 and rng.random() < 0.5 else None
            command: CommandEnvelope = CaptureCredits(
                user_id=user, source="faults",
                payload=CapturePayload(reference=reference, credits=partial),
            )
            self.usage_pending[command.id] = user
            return command
        if kind == "refund" and self.refundable:
            owner, transaction_id, credits = self.refundable.pop(rng.randrange(len(self.refundable)))
            part = rng.randint(1, credits) if rng.random() < 0.5 else None
            return RefundCredits(user_id=owner, source="faults", payload=RefundPayload(
                transaction_id=transaction_id, credits=part, reason="fault suite"))
        if kind == "grant":
            return self.grant(user, rng.randint(100, 800))
        if kind == "hold":
            reference, held = f"hold-{self.seq}-{uuid.uuid4().hex[:6]}", rng.randint(10, 300)
            holds.append((reference, held))
            return HoldCredits(user_id=user, source="faults",
                               payload=HoldPayload(credits=held, reference=reference))
        command = ChargeCredits(user_id=user, source="faults", payload=ChargePayload(
            credits=rng.randint(10, 400), reference=f"booking-{self.seq}"))
        self.usage_pending[command.id] = user
        return command

    # -- publishing ---------------------------------------------------------------------
    async def _send(self, value: bytes, key: bytes, partition: int | None = None) -> Any:
        self.messages += 1
        return await self.ctx.producer.send(self.topic, value=value, key=key, partition=partition)

    async def _send_delayed_due(self, now: float) -> list[Any]:
        """Send the delayed copies due by `now`, earliest first."""
        futures = []
        while self.delayed and self.delayed[0][0] <= now:
            _, _, value, key, partition = heapq.heappop(self.delayed)
            futures.append(await self._send(value, key, partition))
        return futures

    async def publish(self, command: CommandEnvelope) -> list[Any]:
        value, key = command.model_dump_json().encode(), command.user_id.encode()
        self.sent[command.id] = command.type  # type: ignore[attr-defined]
        futures = [await self._send(value, key)]
        if not self.twice:
            return futures
        # Half the copies right behind the original; a third later, behind the user's
        # next commands; the rest on another partition, where they may even be applied
        # before the original (Kafka orders a partition, not a topic).
        roll, partition, at_once = self.rng.random(), None, True
        if roll < 0.5:
            self.copies["adjacent"] += 1
        elif roll < 0.85 or len(self.partitions) < 2:
            self.copies["delayed 0.2-2 s"] += 1
            at_once = False
        else:
            home = DefaultPartitioner()(key, self.partitions, self.partitions)
            partition = (home + 1 + self.rng.randrange(len(self.partitions) - 1)) % len(self.partitions)
            at_once = roll < 0.925
            self.copies["on another partition" + (" at once" if at_once else ", delayed")] += 1
        if at_once:
            futures.append(await self._send(value, key, partition))
        else:
            due = time.monotonic() + self.rng.uniform(0.2, 2.0)
            heapq.heappush(self.delayed, (due, next(self.tiebreak), value, key, partition))
        return futures

    async def with_evidence(self, commands: list[CommandEnvelope]) -> list[CommandEnvelope]:
        """`commands`, their grants' evidence recorded as an admin's request would be.

        While Postgres is down (scenario b) no admin request could record one either:
        that tick's grants are left out rather than published to be refused.
        """
        rows = evidence_rows((c, FAULT_EVIDENCE) for c in commands)
        if not rows:
            return commands
        columns = ([row[c] for row in rows] for c in RECORD_COLUMNS)
        try:
            # Its own connection with asyncpg's own timeout: cancelling a query from
            # outside (asyncio.wait_for) can leave a connection mid-protocol, and the
            # shared one is busy with the checks' polls during a restart.
            await self.evidence_db.fetch(RECORD_ARRAYS, *columns, timeout=1.0)
        except Exception:  # any failure: no admin request could have recorded it either
            self.grants_left_out += len(rows)
            return [c for c in commands if not needs_evidence(c.type)]  # type: ignore[attr-defined]
        return commands

    async def run(self, stop: asyncio.Event) -> None:
        """Publish at `rate` per second in small ticks until `stop`; then flush late copies."""
        carry, last = 0.0, time.monotonic()
        while not stop.is_set():
            now = time.monotonic()
            carry += self.ctx.plan.rate * (now - last)
            last = now
            futures: list[Any] = []
            due = [self.queue.popleft() if self.queue else self.next_command()
                   for _ in range(int(carry))]
            for command in await self.with_evidence(due):
                futures += await self.publish(command)
            carry -= int(carry)
            futures += await self._send_delayed_due(now)
            if futures:
                await asyncio.gather(*futures)
            await asyncio.sleep(TICK)
        await asyncio.gather(*await self._send_delayed_due(math.inf))
        await self.ctx.producer.flush()
        await self.evidence_db.close()

    async def poll_usage(self, stop: asyncio.Event) -> None:
        """Learn the CREDIT_USAGE transactions of applied charges/captures (for refunds)."""
        while not stop.is_set():
            await asyncio.sleep(0.5)
            pending = list(self.usage_pending)
            if not pending:
                continue
            try:
                rows = await self.ctx.db.fetch(
                    "SELECT command_id, status, result->>'transactionId' AS tx, "
                    "(result->>'credits')::bigint AS credits FROM processed_commands "
                    "WHERE command_id = ANY($1::uuid[])",
                    pending,
                )
            except DB_ERRORS:
                continue  # Postgres is restarting: try again later
            for row in rows:
                user = self.usage_pending.pop(row["command_id"], None)
                if user and row["status"] == "applied" and row["tx"]:
                    self.refundable.append((user, uuid.UUID(row["tx"]), int(row["credits"])))
