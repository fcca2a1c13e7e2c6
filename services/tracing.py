"""OpenTelemetry tracing: off unless OTEL_TRACES_EXPORTER names an exporter.

Every process calls `setup_tracing(role)` once at start (ops/cli.py). When tracing is
off nothing is installed: the global tracer stays the API's no-op one and the helpers
here return at their first check, so the ledger's hot path pays one boolean test a
batch. When on, spans go through a BatchSpanProcessor (OTEL_BSP_* tune it) to the
exporters OTEL_TRACES_EXPORTER lists: `otlp` (OTLP over HTTP, OTEL_EXPORTER_OTLP_*)
and/or `console` (one JSON span a line on stdout).

The trace context travels as the W3C `traceparent` (and `tracestate`) headers of
Kafka records, and through the outbox as its `trace_context` column
(docs/operations.md, "Tracing"). A `traceparent` a command arrives with is passed on
to its events even when tracing is off here: copying a header costs nothing and keeps
the platform's traces whole.
"""

import contextlib
import os
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, Tracer

TRACEPARENT = "traceparent"
# W3C Trace Context, version 00: what a `traceparent` must look like to be carried on.
# Anything else a producer sends (a megabyte of text, another format) is dropped, not
# stored in the outbox and copied onto every event of the command.
TRACEPARENT_FORMAT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
TRACER_NAME = "pika-payment"
_enabled = False


def tracing_wanted(environ: dict[str, str] | None = None) -> bool:
    """OTEL_TRACES_EXPORTER set to something other than `none`, and the SDK not
    disabled by OTEL_SDK_DISABLED=true."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = [name.strip() for name in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return any(name and name != "none" for name in exporters)


def tracing_enabled() -> bool:
    return _enabled


def setup_tracing(role: str) -> bool:
    """Install the SDK's tracer provider for this process when tracing is wanted.

    The service name is OTEL_SERVICE_NAME, else `pika-payment-<role>`; the rest of the
    resource comes from OTEL_RESOURCE_ATTRIBUTES. Returns whether tracing is on.
    """
    global _enabled
    if _enabled or not tracing_wanted():
        return _enabled
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or f"pika-payment-{role}"
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    for exporter in _exporters(os.environ.get("OTEL_TRACES_EXPORTER", "")):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _enabled = True
    return True


def _exporters(names: str) -> list[Any]:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    chosen: list[Any] = []
    for name in {part.strip() for part in names.split(",")} - {"", "none"}:
        if name == "console":
            chosen.append(ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n"))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            chosen.append(OTLPSpanExporter())
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console, none)")
    return chosen


def tracer() -> Tracer:
    return trace.get_tracer(TRACER_NAME)


def producer_span(
    name: str, count: int, links: Sequence[Link] = ()
) -> AbstractContextManager[Any]:
    """A current PRODUCER span around publishing `count` records; nothing when off."""
    if not _enabled:
        return contextlib.nullcontext()
    return tracer().start_as_current_span(
        name, kind=SpanKind.PRODUCER, links=list(links),
        attributes={"messaging.system": "kafka", "messaging.batch.message_count": count},
    )


def trace_headers() -> list[tuple[str, bytes]]:
    """Kafka headers carrying the current span's context; none when tracing is off."""
    if not _enabled:
        return []
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


def valid_traceparent(value: bytes) -> str | None:
    """`value` as a traceparent if it is a well-formed W3C one (55 bytes), else None."""
    if len(value) != 55:
        return None
    text = value.decode("ascii", errors="replace")
    return text if TRACEPARENT_FORMAT.fullmatch(text) else None


def header_traceparent(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The well-formed `traceparent` among a record's headers, if any (a scan of a few
    pairs); a malformed one counts as none."""
    for key, value in headers or ():
        if key == TRACEPARENT:
            return valid_traceparent(value)
    return None


def span_context(traceparent: str | None) -> SpanContext | None:
    """The remote span context a `traceparent` names; None when absent or malformed."""
    if not traceparent:
        return None
    found = trace.get_current_span(propagate.extract({TRACEPARENT: traceparent})).get_span_context()
    return found if found.is_valid else None


def links_to(traceparents: Sequence[str | None]) -> list[Link]:
    """Links to each valid context, once each."""
    contexts = {tp: span_context(tp) for tp in traceparents if tp}
    return [Link(context) for context in contexts.values() if context is not None]


def child_of(traceparent: str | None) -> Any:
    """An OpenTelemetry Context whose parent is the remote span `traceparent` names
    (the empty context when there is none: the span starts a trace)."""
    context = span_context(traceparent)
    if context is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(context))


def traceparent_of(span: Span) -> str | None:
    """The `traceparent` that makes `span` the parent of what comes next."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT)
