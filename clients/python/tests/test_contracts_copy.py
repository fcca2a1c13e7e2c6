"""The client's copy of the contracts builds the JSON the worker accepts.

Runs with the client alone installed (tests/test_python_client_package.py runs it in
a clean virtual environment), so it checks the copy, not the service's `schemas`.
"""

import json
import uuid

import pytest
from pydantic import TypeAdapter, ValidationError

from pika_payment_client.contracts.commands import (
    SCHEMA_VERSION,
    ChargeCredits,
    ChargePayload,
    PublicCommand,
    command_id_for,
)


def _charge(credits: object) -> ChargeCredits:
    return ChargeCredits.model_validate({
        "id": str(command_id_for("booking-1", "charge")),
        "userId": "user-1",
        "source": "bookings",
        "payload": {"credits": credits, "reference": "booking-1"},
    })


def test_a_charge_serializes_with_camel_case_keys_and_schema_version_1() -> None:
    command = ChargeCredits(
        user_id="user-1", source="bookings",
        payload=ChargePayload(credits=5, reference="booking-1"),
    )
    body = json.loads(command.model_dump_json())
    assert body["type"] == "credits.charge"
    assert body["schemaVersion"] == SCHEMA_VERSION == 1
    assert {"userId", "occurredAt", "correlationId"} <= set(body)
    assert not {"user_id", "schema_version", "occurred_at"} & set(body)
    assert body["payload"] == {"credits": 5, "reference": "booking-1", "metadata": {}}
    again = TypeAdapter(PublicCommand).validate_json(command.model_dump_json())
    assert again == command


@pytest.mark.parametrize("credits", ["5", 5.0, True, 0, -1])
def test_credits_that_are_not_a_positive_integer_are_refused(credits: object) -> None:
    with pytest.raises(ValidationError):
        _charge(credits)


def test_the_command_id_of_a_booking_is_deterministic() -> None:
    """A retried publish carries the same id, so the ledger applies it once."""
    assert _charge(5).id == command_id_for("booking-1", "charge") == uuid.uuid5(
        uuid.UUID("4b6f1c1e-5d4c-4f1e-9a57-70696b617061"), "booking-1/charge"
    )
