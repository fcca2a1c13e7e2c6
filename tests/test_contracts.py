"""The wire contracts other teams code against: the documented examples and error codes
(docs/kafka.md, docs/api.md), schemas, AsyncAPI."""

import json
import re
from pathlib import Path

from schemas.commands import COMMAND_MODELS, command_adapter
from schemas.events import EVENT_MODELS
from services.errors import ALL_ERRORS
from services.settings import Settings
from workers.contracts import asyncapi_document

DOCS = Path(__file__).resolve().parent.parent / "docs"
KAFKA_DOC = DOCS / "kafka.md"  # one complete example of each command, for platform teams
API_DOC = DOCS / "api.md"  # the errors table, for HTTP clients


def documented_command_examples() -> dict[str, dict]:
    text = KAFKA_DOC.read_text()
    found = re.findall(r"#### `([a-z_]+\.[a-z_]+)`.*?```json\n(.*?)\n```", text, re.S)
    return {name: json.loads(body) for name, body in found}


def test_kafka_doc_has_one_valid_example_of_every_command():
    examples = documented_command_examples()
    kinds = {m.model_fields["type"].default for m in COMMAND_MODELS}
    assert set(examples) == kinds
    for name, example in examples.items():
        command = command_adapter.validate_python(example)
        assert command.type == name
        assert json.loads(command.model_dump_json()).keys() == example.keys() | {"payload"}


def test_the_public_examples_carry_the_ids_the_python_client_derives():
    """A platform team reading the examples sees the ids its retries will carry: the
    booking and the action (and a refund's transaction), as `pika_payment_client` does."""
    from pika_payment_client import command_id

    examples = documented_command_examples()
    for kind in ("charge", "hold", "capture", "release"):
        example = examples[f"credits.{kind}"]
        assert example["id"] == str(command_id(example["payload"]["reference"], kind)), kind
    refund = examples["credits.refund"]
    assert refund["id"] == str(command_id("booking-123", "refund", refund["payload"]["transactionId"]))


def test_wire_json_is_camel_case_and_round_trips():
    for name, example in documented_command_examples().items():
        dumped = json.loads(command_adapter.validate_python(example).model_dump_json())
        assert "userId" in dumped and "user_id" not in dumped, name
        assert command_adapter.validate_json(json.dumps(dumped)) == command_adapter.validate_python(
            example
        )


def test_every_error_code_is_documented_in_the_api_doc():
    text = API_DOC.read_text()
    for error in ALL_ERRORS:
        assert f"| {error.code} | {error.status} |" in text, error.code


def test_asyncapi_documents_both_topics_with_their_messages():
    document = asyncapi_document(Settings())
    assert set(document["channels"]) == {"payment.commands", "payment.commands.internal",
                                         "payment.events", "payment.commands.dlq",
                                         "payment.events.dlq"}
    names = set(document["components"]["schemas"])
    assert {m.__name__ for m in COMMAND_MODELS} <= names
    assert {m.__name__ for m in EVENT_MODELS} <= names
    charge = document["components"]["schemas"]["ChargeCredits"]
    assert "userId" in charge["properties"]


def test_asyncapi_names_every_provisioned_topic_with_its_key_and_dlq_headers():
    from ops.topics import wanted_topics

    settings = Settings(topic_prefix="t-")
    document = asyncapi_document(settings)
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(wanted_topics(settings)), "every topic the service provisions"
    messages = document["components"]["messages"]
    for name, message in messages.items():
        assert message["bindings"]["kafka"]["key"]["type"] == "string", name

    def headers_of(channel: str) -> dict:
        [found] = [m["headers"] for n, m in messages.items() if n.startswith(f"{channel}:")]
        return found

    commands_dlq, events_dlq = headers_of("payment.commands.dlq"), headers_of("payment.events.dlq")
    position = {"x-dlq-reason", "x-original-topic", "x-original-partition", "x-original-offset"}
    assert set(commands_dlq["properties"]) == position
    assert set(commands_dlq["required"]) == position
    assert set(events_dlq["properties"]) == position | {"x-notification-template", "x-attempts"}
    assert set(events_dlq["required"]) == {"x-dlq-reason", "x-original-topic"}
    traced = [m["headers"] for n, m in messages.items() if ".dlq:" not in n]
    assert traced and all(set(h["properties"]) == {"traceparent", "tracestate"} for h in traced)


def test_asyncapi_dlq_headers_are_the_ones_the_workers_write():
    """The documented names are the constants the DLQ writers use (not copies of them)."""
    import inspect

    from workers import dead_letters, mailer

    document = asyncapi_document(Settings())
    documented = set()
    for message in document["components"]["messages"].values():
        documented |= {name for name in message.get("headers", {}).get("properties", {})
                       if name.startswith("x-")}
    written = {value for key, value in vars(dead_letters).items()
               if key.isupper() and isinstance(value, str) and value.startswith("x-")}
    assert documented == written
    for source in (inspect.getsource(dead_letters.send_to_dlq), inspect.getsource(mailer)):
        assert '"x-' not in source, "header names come from workers.dead_letters"


def test_every_example_body_in_the_openapi_document_is_valid_for_its_model():
    import schemas.api
    import schemas.fraud_api
    import schemas.promo_api
    import schemas.support_api
    from schemas.base import WireModel

    checked = set()
    for module in (schemas.api, schemas.fraud_api, schemas.promo_api, schemas.support_api):
        for model in vars(module).values():
            if not (isinstance(model, type) and issubclass(model, WireModel)):
                continue
            extra = model.model_config.get("json_schema_extra")
            for example in extra.get("examples", []) if isinstance(extra, dict) else []:
                model.model_validate_json(json.dumps(example))  # as a client would send it
                checked.add(model.__name__)
    assert {"GrantRequest", "RefundRequest", "TransferRequest", "PackCreate", "PlanCreate",
            "PromoCodeCreate", "PromoTarget", "ResolveRequest", "PurchaseRequest", "BalanceRead",
            "CommandAppliedRead", "CommandPendingRead", "PublicConfigRead", "CustomerSearchRead",
            "CustomerRead", "ExplanationPage", "BatchStoryRead"} <= checked


def test_unknown_fields_and_versions_are_refused():
    example = documented_command_examples()["credits.charge"]
    for broken in (
        {**example, "surprise": 1},
        {**example, "schemaVersion": 2},
        {**example, "payload": {**example["payload"], "credits": 0}},
        {**example, "payload": {**example["payload"], "credits": 1.5}},
        {**example, "userId": "x" * 200},
        # Text Postgres cannot store (jsonb and text hold no NUL): refused, not a PAY500 later.
        {**example, "payload": {**example["payload"], "metadata": {"note": "a\x00b"}}},
        {**example, "payload": {**example["payload"], "metadata": {"a": [{"b": "\x00"}]}}},
        {**example, "payload": {**example["payload"], "reference": "booking\x00"}},
    ):
        try:
            command_adapter.validate_python(broken)
        except ValueError:
            continue
        raise AssertionError(f"accepted {broken}")


def test_a_command_fingerprint_sees_its_meaning_not_its_defaults():
    from schemas.commands import (
        ChargeCredits,
        ChargePayload,
        GrantCredits,
        GrantPayload,
        command_fingerprint,
    )

    def charge(user: str = "u-1", **payload: object) -> ChargeCredits:
        fields = {"credits": 3, "reference": "b-1", **payload}
        return ChargeCredits(user_id=user, payload=ChargePayload(**fields))

    same = command_fingerprint(charge())
    assert command_fingerprint(charge(metadata={})) == same, "a default spelled out is the same"
    assert command_fingerprint(charge(metadata={"b": 1, "a": 2})) == command_fingerprint(
        charge(metadata={"a": 2, "b": 1})), "key order is no meaning"
    others = [charge(credits=4), charge(reference="b-2"), charge(user="u-2"),
              charge(metadata={"a": 1}),
              GrantCredits(user_id="u-1", payload=GrantPayload(credits=3, reason="b-1"))]
    assert all(command_fingerprint(other) != same for other in others)
