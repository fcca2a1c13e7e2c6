"""Decoding a message into its typed event, and choosing its handlers."""

import json
import uuid

import pytest
from samples import balance_changed, credits_charged

from pika_payment_client.contracts.events import (
    BalanceChanged,
    CommandRejected,
    CreditsCharged,
    EventEnvelope,
)
from pika_payment_client.dispatch import EVENT_TYPES, Handlers, InvalidEvent, decode_event


def test_a_valid_event_decodes_to_its_model() -> None:
    event = balance_changed(available=7, delta=-3)
    decoded = decode_event(event.model_dump_json().encode())
    assert isinstance(decoded, BalanceChanged)
    assert decoded == event
    assert decoded.payload.available == 7


def test_every_rejection_type_is_known() -> None:
    assert "credits.charge.rejected" in EVENT_TYPES and "balance.changed" in EVENT_TYPES
    body = {
        "id": str(uuid.uuid4()), "type": "credits.charge.rejected", "schemaVersion": 1,
        "occurredAt": "2026-11-26T10:15:00Z", "userId": "u-1",
        "payload": {"code": "PAY001", "message": "insufficient credits"},
    }
    assert isinstance(decode_event(json.dumps(body).encode()), CommandRejected)


SECRET = "alice@example.com"


def _body(**changes: object) -> bytes:
    body = json.loads(balance_changed().model_dump_json())
    body.update(changes)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "message without a value"),
        (b"{not json " + SECRET.encode(), "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (json.dumps([SECRET]).encode(), "not a JSON object"),
        (_body(type="credits.teleported"), "unknown event type 'credits.teleported'"),
        (_body(type=None), "unknown event type NoneType"),
        (_body(type=["balance.changed"]), "unknown event type list"),
        (_body(schemaVersion=2), "schemaVersion 2 is not 1"),
        (_body(schemaVersion=True), "schemaVersion true is not 1"),
        (_body(schemaVersion=1.0), "schemaVersion 1.0 is not 1"),
        (_body(schemaVersion="1"), 'schemaVersion "1" is not 1'),
        (_body(userId=None, source=SECRET), "balance.changed does not match its contract: userId"),
        (_body(email=SECRET), "balance.changed does not match its contract: email: Extra inputs"),
    ],
)
def test_an_unreadable_message_is_refused_with_a_reason_that_does_not_quote_it(
    value: bytes | None, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        decode_event(value)
    assert refused.value.reason.startswith(reason), refused.value.reason
    assert SECRET not in refused.value.reason


def test_a_number_in_a_string_is_not_a_number() -> None:
    body = json.loads(balance_changed().model_dump_json())
    body["payload"]["available"] = "5"
    with pytest.raises(InvalidEvent, match=r"payload\.available"):
        decode_event(json.dumps(body).encode())


async def test_handlers_get_the_events_of_their_model_in_registration_order() -> None:
    handlers = Handlers()
    calls: list[str] = []

    @handlers.on(BalanceChanged)
    async def first(event: BalanceChanged) -> None:
        calls.append(f"first {event.payload.available}")

    @handlers.on_any
    async def everything(event: EventEnvelope) -> None:
        calls.append(f"any {type(event).__name__}")

    @handlers.on(BalanceChanged)
    async def second(event: BalanceChanged) -> None:
        calls.append(f"second {event.payload.delta}")

    @handlers.on(CreditsCharged)
    async def charged(event: CreditsCharged) -> None:
        calls.append(f"charged {event.payload.credits}")

    for event in (balance_changed(available=4, delta=-1), credits_charged(credits=1)):
        for handler in handlers.for_event(event):
            await handler(event)
    assert calls == ["first 4", "any BalanceChanged", "second -1", "any CreditsCharged", "charged 1"]


def test_only_event_models_take_handlers() -> None:
    handlers = Handlers()

    class NotAnEvent(EventEnvelope):
        pass

    with pytest.raises(TypeError):
        handlers.on(NotAnEvent)
    with pytest.raises(TypeError):
        handlers.on(dict)  # type: ignore[type-var]
