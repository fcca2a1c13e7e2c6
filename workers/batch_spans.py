"""The ledger worker's spans, made only when tracing is on (services/tracing.py).

A batch gets one span, `apply batch`, linked to the context of every command in it
(one batch serves many traces, so it is no one's child). Each command that arrived
with a `traceparent` also gets an `apply command` span in its own trace, a child of
the span that published it, covering the batch; its context is what the command's
events carry through the outbox, so the relay's span follows it in the same trace.
A command that came without a context hands the batch span's on to its events.
"""

import uuid
from collections.abc import Awaitable, Callable, Mapping

from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from schemas.commands import CommandEnvelope
from services.ledger.apply import BatchReport
from services.tracing import child_of, links_to, traceparent_of, tracer

Apply = Callable[[Mapping[uuid.UUID, str]], Awaitable[BatchReport]]


async def traced_apply(
    apply: Apply, commands: list[CommandEnvelope], trace_contexts: Mapping[uuid.UUID, str]
) -> BatchReport:
    """Run `apply` (given each command's trace context for its events) inside the spans."""
    spans = tracer()
    with spans.start_as_current_span(
        "apply batch",
        kind=SpanKind.CONSUMER,
        links=links_to(list(trace_contexts.values())),
        attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(commands)},
    ) as batch:
        batch_context = traceparent_of(batch)
        per_command: dict[uuid.UUID, Span] = {}
        for command in commands:
            parent = child_of(trace_contexts.get(command.id))
            if parent is not None and command.id not in per_command:
                per_command[command.id] = spans.start_span(
                    "apply command", context=parent, kind=SpanKind.CONSUMER,
                    links=[Link(batch.get_span_context())],
                    attributes={"pika.command.id": str(command.id),
                                "pika.command.type": command.type},  # type: ignore[attr-defined]
                )
        contexts: dict[uuid.UUID, str] = {}
        for command in commands:
            span = per_command.get(command.id)
            own = traceparent_of(span) if span is not None else batch_context
            if own is not None:
                contexts[command.id] = own
        try:
            report = await apply(contexts)
        except BaseException as error:
            for span in per_command.values():
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                span.end()
            raise
        for outcome in report.outcomes:
            span = per_command.get(outcome.command.id)
            if span is not None:
                span.set_attribute("pika.command.status", outcome.status)
        for span in per_command.values():
            span.end()
        batch.set_attribute("pika.batch.duplicates", report.duplicates)
        return report
