"""Ledger worker: applies `payment.commands` and `payment.commands.internal` to Postgres,
a batch per DB transaction, after refusing what the producer's zone may not publish
(workers/trust.py).

Acknowledgement is manual and comes after the commit, so a crash before it means
redelivery, which `processed_commands` turns into a no-op (at-least-once delivery,
exactly-once effect). A message that is not a command goes to the DLQ and the batch
goes on; a transient DB failure retries the batch, then leaves it to redelivery.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aiokafka import ConsumerRebalanceListener
from aiokafka.structs import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import Consumer, KafkaMessage
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_chain,
    wait_fixed,
)

from schemas.commands import CommandEnvelope
from services.bootstrap import command_registry
from services.ledger.apply import BatchReport, apply_commands, is_transient
from services.ledger.registry import CommandRegistry
from services.metrics import (
    BATCH_LATENCY,
    BATCH_RETRIES,
    BATCH_SIZE,
    COMMAND_DUPLICATES,
    COMMANDS,
    CONSUMER_LAG,
)
from services.settings import Settings
from services.tracing import header_traceparent, tracing_enabled
from workers.batch_spans import traced_apply
from workers.dead_letters import send_to_dlq
from workers.parsing import parse_command
from workers.trust import refuse_untrusted

log = logging.getLogger("pika.worker")
RETRY_DELAYS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)
GROUP_ID = "payment-ledger"
# Longest a fetch waits at the broker for data. Kafka answers as soon as data arrives,
# so this only sets the idle poll rate there; tansu answers when the wait expires, so
# aiokafka's 500 ms default was latency (bench: ~150 ms p50 per hop at low rates).
FETCH_MAX_WAIT_MS = 20


def _count_and_log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    BATCH_RETRIES.inc()
    log.warning(
        "batch retry in %.2fs after %s: %s",
        delay, type(error).__name__, str(error).split("\n", 1)[0][:200],
    )


def _batch_retrying() -> AsyncRetrying:
    """Transient database failures only (services.ledger.apply.is_transient), waiting
    RETRY_DELAYS in turn; after the last the error goes up and the batch is redelivered."""
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_chain(*(wait_fixed(delay) for delay in RETRY_DELAYS)),
        stop=stop_after_attempt(len(RETRY_DELAYS) + 1),
        before_sleep=_count_and_log_retry,
        reraise=True,
    )


async def apply_with_retries(
    engine: AsyncEngine,
    settings: Settings,
    commands: list[CommandEnvelope],
    registry: CommandRegistry,
    trace_contexts: Mapping[uuid.UUID, str] | None = None,
) -> BatchReport:
    """Apply a batch, retrying transient failures.

    This runs for every batch and a tenacity retry object costs ~0.1 ms to make and
    run, so the first try goes without one: only a batch that failed transiently pays.
    """
    try:
        return await apply_commands(engine, settings, commands, registry, trace_contexts)
    except Exception as error:
        if not is_transient(error):
            raise
        replay: list[Exception] = [error]

    async def attempt() -> BatchReport:
        if replay:  # tenacity's attempt 1 is the failed try above: its wait, count and log
            raise replay.pop()
        return await apply_commands(engine, settings, commands, registry, trace_contexts)

    return await _batch_retrying()(attempt)


async def _keep_raw(msg: Any) -> None:
    """Decoder that decodes nothing: the handler parses `msg.raw_message` itself.

    FastStream's default batch decoder wraps every record in a message object and
    JSON-decodes its body (~10 us a record) only for the result to go unused.
    """
    return None


def register_ledger_worker(
    broker: KafkaBroker,
    engine: AsyncEngine,
    settings: Settings,
    group_id: str | None = None,
    listener: ConsumerRebalanceListener | None = None,
) -> None:
    """`listener` hears the group's assignments (the process's readiness uses it).

    The group is `payment-ledger` under TOPIC_PREFIX, like the topics: workers of
    another prefix (tests, benchmarks) must not join, and so pause, this group.
    The command handlers are assembled once here, not per batch.
    """
    registry = command_registry()

    @broker.subscriber(
        settings.commands_topic,
        settings.internal_commands_topic,
        group_id=group_id or settings.topic(GROUP_ID),
        batch=True,
        max_records=settings.worker_batch_size,
        batch_timeout_ms=50,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        decoder=_keep_raw,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        max_poll_interval_ms=10 * 60 * 1000,
        listener=listener,
        include_in_schema=False,
    )
    async def apply_command_batch(msg: KafkaMessage, consumer: Consumer) -> None:
        records = msg.raw_message
        if not isinstance(records, tuple):
            records = (records,)
        try:
            applied = await _handle(broker, engine, settings, registry, records)
        except Exception as error:
            # Never acknowledge past a batch we could not finish (not even its DLQ sends):
            # seek back, pause, and let the batch come again.
            log.exception(
                "batch of %d records not finished (%s: %s); it will be redelivered",
                len(records), type(error).__name__, str(error).split("\n", 1)[0][:300],
            )
            await asyncio.sleep(1.0)
            await msg.nack()
            return
        if applied:
            await msg.ack()
            record_lag(consumer, records)
        else:
            await msg.nack()


async def _handle(
    broker: KafkaBroker,
    engine: AsyncEngine,
    settings: Settings,
    registry: CommandRegistry,
    records: tuple[ConsumerRecord, ...],
) -> bool:
    """Dead-letter what is not a command, apply the rest; False: leave it to redelivery."""
    parsed_commands: list[tuple[CommandEnvelope, ConsumerRecord]] = []
    for record in records:
        parsed = parse_command(record)
        if isinstance(parsed, str):
            log.warning(
                "dead-lettering %s[%s]@%s: %s", record.topic, record.partition, record.offset, parsed
            )
            await send_to_dlq(broker, settings.commands_dlq_topic, record, parsed)
        else:
            parsed_commands.append((parsed, record))
    allowed, refused = await refuse_untrusted(engine, settings, parsed_commands)
    for refusal in refused:
        log.warning(
            "refused %s from %s[%s]@%s: %s", refusal.command.type,  # type: ignore[attr-defined]
            refusal.record.topic, refusal.record.partition, refusal.record.offset, refusal.reason,
        )
        await send_to_dlq(broker, settings.commands_dlq_topic, refusal.record, refusal.reason)
    commands = [command for command, _record in allowed]
    # By the parsed object: two may share an id.
    origin = {id(command): record for command, record in allowed}
    if not commands:
        return True
    # The trace context each command came with goes on to its events, even with tracing
    # off: a scan of the record's one or two headers, ~0.2 us a record (docs/operations.md).
    trace_contexts = {
        command.id: traceparent
        for command, record in allowed
        if (traceparent := header_traceparent(record.headers)) is not None
    }
    started = time.perf_counter()
    try:
        if tracing_enabled():
            report = await traced_apply(
                lambda contexts: apply_with_retries(engine, settings, commands, registry, contexts),
                commands, trace_contexts,
            )
        else:
            report = await apply_with_retries(engine, settings, commands, registry, trace_contexts)
    except Exception as error:
        # The cause goes in the message: the formatter keeps only the tail of a
        # traceback, which for a SQL error is its parameter list.
        log.exception(
            "batch of %d commands not applied (%s: %s); it will be redelivered",
            len(commands), type(error).__name__, str(error).split("\n", 1)[0][:300],
        )
        return False
    BATCH_LATENCY.observe(time.perf_counter() - started)
    BATCH_SIZE.observe(len(commands))
    COMMAND_DUPLICATES.inc(report.duplicates)
    for outcome in report.outcomes:
        command = outcome.command
        COMMANDS.labels(type=command.type, status=outcome.status).inc()  # type: ignore[attr-defined]
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "command %s %s", command.type, outcome.status,  # type: ignore[attr-defined]
                extra={"correlation_id": command.correlation_id, "command_id": command.id,
                       "user_id": command.user_id},
            )
    log.info(
        "batch applied: %d applied, %d rejected, %d duplicates, %d dead letters",
        report.applied, report.rejected, report.duplicates, len(report.dead_letters),
    )
    for outcome in report.dead_letters:
        await send_to_dlq(
            broker, settings.commands_dlq_topic, origin[id(outcome.command)],
            outcome.dead_letter_reason or "",
        )
    return True


def record_lag(consumer: Any, records: tuple[ConsumerRecord, ...]) -> None:
    """Messages behind the log end per partition, from the fetch's high watermark."""
    last: dict[Any, int] = {}
    for record in records:
        last[(record.topic, record.partition)] = record.offset
    for partition in consumer.assignment():
        highwater = consumer.highwater(partition)
        offset = last.get((partition.topic, partition.partition))
        if highwater is not None and offset is not None:
            CONSUMER_LAG.labels(partition=str(partition.partition)).set(highwater - offset - 1)
