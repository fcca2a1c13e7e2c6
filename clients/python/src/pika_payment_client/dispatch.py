"""From a message's bytes to the handlers it concerns, without Kafka.

`decode_event` turns the bytes of a `payment.events` message into its typed event or
says, without quoting the body (events carry emails), why it cannot; `Handlers` keeps
the handlers registered per event model. `PaymentEvents` (events.py) is the Kafka loop
around both, so what they decide is tested without a broker.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, get_args

from pydantic import ValidationError

from pika_payment_client.contracts.events import EVENT_MODELS, EventEnvelope, event_adapter

E = TypeVar("E", bound=EventEnvelope)
Handler = Callable[[E], Awaitable[None]]
AnyHandler = Callable[[EventEnvelope], Awaitable[None]]


def _event_types() -> frozenset[str]:
    """Every `type` value the contracts know (a model's `type` is a Literal of them)."""
    return frozenset(
        kind for model in EVENT_MODELS for kind in get_args(model.model_fields["type"].annotation)
    )


EVENT_TYPES = _event_types()


class InvalidEvent(ValueError):
    """The bytes are not an event this client's contracts accept; `reason` names why
    without the body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_event(value: bytes | None) -> EventEnvelope:
    """The typed event in `value`, or `InvalidEvent`.

    An event type the contracts do not know (a newer service than this client) is
    invalid here, as is a `schemaVersion` other than 1: the handlers could not read it.
    """
    if value is None:
        raise InvalidEvent("message without a value")
    try:
        decoded: Any = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        raise InvalidEvent("not JSON") from None
    if not isinstance(decoded, dict):
        raise InvalidEvent("not a JSON object")
    kind = decoded.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        shown = repr(kind)[:80] if isinstance(kind, str) else type(kind).__name__
        raise InvalidEvent(f"unknown event type {shown}")
    version = decoded.get("schemaVersion")
    if not (type(version) is int and version == 1):
        shown = json.dumps(version)[:20]
        raise InvalidEvent(f"schemaVersion {shown} is not 1, the only version this client reads")
    try:
        return cast(EventEnvelope, event_adapter.validate_json(value))
    except ValidationError as error:
        problems = "; ".join(
            # the union's tag (the type) leads every location: said once, before
            f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}"
            for problem in error.errors(include_url=False, include_input=False, include_context=False)[:3]
        )
        raise InvalidEvent(f"{kind} does not match its contract: {problems}"[:500]) from None


class Handlers:
    """Handlers per event model, called in the order they were registered.

    A handler registered for a model gets that model's events; one registered for
    `EventEnvelope` (`on_any`) gets every event. Several handlers may share a model.
    """

    def __init__(self) -> None:
        self._registered: list[tuple[type[EventEnvelope], AnyHandler]] = []

    def on(self, model: type[E]) -> Callable[[Handler[E]], Handler[E]]:
        """Decorator: call the handler with every event of `model`, typed as `model`."""
        if model is not EventEnvelope and model not in EVENT_MODELS:
            raise TypeError(f"{model!r} is not an event model of pika_payment_client.contracts.events")

        def register(handler: Handler[E]) -> Handler[E]:
            # Safe: `for_event` only passes an instance of `model` to this handler.
            self._registered.append((model, cast(AnyHandler, handler)))
            return handler

        return register

    def on_any(self, handler: AnyHandler) -> AnyHandler:
        """Decorator: call the handler with every event, whatever its type."""
        return self.on(EventEnvelope)(handler)

    def for_event(self, event: EventEnvelope) -> list[AnyHandler]:
        return [handler for model, handler in self._registered if isinstance(event, model)]
