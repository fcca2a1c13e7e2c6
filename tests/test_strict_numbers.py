"""Numbers and booleans on the wire are JSON numbers and JSON booleans, nothing else.

Lax pydantic turns `"5"`, `true` and `5.0` into the integer 5 (and `"false"`, `0` into
False): over HTTP and Kafka such a body moved credits although the contract says
integer. Every int and bool field of every wire model is strict; the unit tests walk
the models' fields, so a field added later is checked without touching this file.
"""

import asyncio
import json
import types
import uuid
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import ValidationError
from sqlalchemy import text

import schemas.api
import schemas.commands
import schemas.events
import schemas.fraud_api
import schemas.promo_api
import schemas.support_actions_api
import schemas.support_api
from schemas.base import WireModel
from schemas.commands import (
    ChargeCredits,
    ChargePayload,
    CommandRequest,
    GrantCredits,
    GrantPayload,
    command_adapter,
)
from tests.conftest import auth, dead_letters, publish, wait_processed

SCHEMA_MODULES = (schemas.api, schemas.commands, schemas.events, schemas.fraud_api,
                  schemas.promo_api, schemas.support_api, schemas.support_actions_api)
# What lax validation would have turned into a number or a boolean.
NOT_INTS: tuple[Any, ...] = ("1", True, 1.0, "true")
NOT_BOOLS: tuple[Any, ...] = ("true", "false", 1, 0, "1", 1.0)
TYPE_ERROR = {"int": "int_type", "bool": "bool_type"}


# --- every field of every wire model ------------------------------------------------------


def wire_models() -> list[type[WireModel]]:
    modules = {m.__name__ for m in SCHEMA_MODULES}
    found: dict[str, type[WireModel]] = {}
    pending = list(WireModel.__subclasses__())
    while pending:
        model = pending.pop()
        pending += model.__subclasses__()
        if model.__module__ in modules:
            found[f"{model.__module__}.{model.__qualname__}"] = model
    return [found[name] for name in sorted(found)]


def scalar_kinds(annotation: Any) -> set[str]:
    """"int" and/or "bool" if a field takes that scalar (alone, optional or in a union)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return scalar_kinds(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(scalar_kinds(arg) for arg in get_args(annotation)))
    if origin is Literal:
        values = get_args(annotation)
        return {"bool"} if any(type(v) is bool for v in values) else (
            {"int"} if any(type(v) is int for v in values) else set()
        )
    if annotation is bool:
        return {"bool"}
    if annotation is int:
        return {"int"}
    if origin is not None:  # list[...], dict[...]: numbers inside need another shape of test
        inner = set().union(*(scalar_kinds(arg) for arg in get_args(annotation)))
        assert not inner, f"{annotation}: teach this test about numbers inside containers"
    return set()


def scalar_fields() -> list[tuple[type[WireModel], str, str]]:
    found = []
    for model in wire_models():
        for name, info in model.model_fields.items():
            for kind in sorted(scalar_kinds(info.annotation)):
                found.append((model, info.alias or name, kind))
    return found


FIELDS = scalar_fields()
FIELD_IDS = [f"{model.__name__}.{alias}" for model, alias, _ in FIELDS]


def type_errors_at(model: type[WireModel], alias: str, value: Any, mode: str) -> list[str]:
    """Error types reported for `alias` when only that key is given (others may be missing)."""
    try:
        if mode == "json":  # the Kafka worker
            model.model_validate_json(json.dumps({alias: value}))
        elif mode == "litestar":  # Litestar's pydantic plugin: the decoded dict, strict=False
            model.model_validate({alias: value}, strict=False)
        else:
            model.model_validate({alias: value})
    except ValidationError as error:
        return [e["type"] for e in error.errors() if e["loc"][:1] == (alias,)]
    return []


def test_the_walk_finds_the_money_fields():
    found = {(model.__name__, alias, kind) for model, alias, kind in FIELDS}
    for expected in (
        ("ChargePayload", "credits", "int"),
        ("GrantPayload", "credits", "int"),
        ("GrantRequest", "credits", "int"),
        ("CapturePayload", "credits", "int"),
        ("RefundRequest", "amount", "int"),
        ("ConfirmPurchasePayload", "amountReceived", "int"),
        ("CommandEnvelope", "schemaVersion", "int"),
        ("PackUpdate", "active", "bool"),
        ("PromoCodeCreate", "percentOff", "int"),
        ("SubscriptionStatePayload", "cancelAtPeriodEnd", "bool"),
        ("CreditsExpiringPayload", "credits", "int"),
        ("FraudFlagRead", "frozenCredits", "int"),
        ("ExplanationEntryRead", "balanceAfter", "int"),
        ("AllocationRead", "credits", "int"),
    ):
        assert expected in found, expected
    assert len(FIELDS) > 100


@pytest.mark.parametrize("mode", ["python", "json", "litestar"])
@pytest.mark.parametrize(("model", "alias", "kind"), FIELDS, ids=FIELD_IDS)
def test_every_int_and_bool_field_refuses_lookalikes(model, alias, kind, mode):
    expected = TYPE_ERROR[kind]
    for value in NOT_INTS if kind == "int" else NOT_BOOLS:
        found = type_errors_at(model, alias, value, mode)
        assert expected in found, f"{model.__name__}.{alias} took {value!r} ({mode}): {found}"
    genuine = 1 if kind == "int" else True
    assert expected not in type_errors_at(model, alias, genuine, mode)


@pytest.mark.parametrize(("model", "alias", "kind"), FIELDS, ids=FIELD_IDS)
def test_json_schema_still_says_integer_and_boolean(model, alias, kind):
    schema = model.model_json_schema(by_alias=True)
    prop = schema["properties"][alias]
    parts = (prop, *prop.get("anyOf", []))
    assert ("integer" if kind == "int" else "boolean") in {s.get("type") for s in parts}, prop
    # A constraint placed after the exact-type check is enforced in Python and shows up
    # as a raw `gt`/`le` key instead of exclusiveMinimum/maximum (see schemas/base.py).
    assert not {"gt", "ge", "lt", "le"} & {k for s in parts for k in s}, prop


def test_the_command_parsers_refuse_a_string_credit():
    charge = ChargeCredits(user_id="u-1", payload=ChargePayload(credits=3, reference="b-1"))
    body = json.loads(charge.model_dump_json())
    for value in ("3", True, 3.0):
        body["payload"]["credits"] = value
        with pytest.raises(ValidationError):
            command_adapter.validate_json(json.dumps(body))  # the Kafka worker
        with pytest.raises(ValidationError):
            CommandRequest.model_validate(body)  # a decoded dict, Python mode
        with pytest.raises(ValidationError):
            CommandRequest.model_validate(body, strict=False)  # as Litestar calls it
    body["payload"]["credits"] = 3
    assert command_adapter.validate_json(json.dumps(body)) == charge


# --- over HTTP ------------------------------------------------------------------------------

HTTP_IMPOSTORS: tuple[Any, ...] = ("5", True, 5.0, "3")


async def ledger_of(engine, user: str) -> tuple[tuple[int, int] | None, int, int]:
    async with engine.connect() as conn:
        account = (
            await conn.execute(
                text("SELECT available, held FROM accounts WHERE user_id = :u"), {"u": user}
            )
        ).first()
        transactions = await conn.scalar(
            text("SELECT count(*) FROM ledger_transactions WHERE user_id = :u"), {"u": user}
        )
        processed = await conn.scalar(
            text("SELECT count(*) FROM processed_commands WHERE user_id = :u"), {"u": user}
        )
    return (tuple(account) if account else None), transactions, processed


def command_body(user: str, kind: str, credits: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"credits": credits}
    payload |= {"reference": "booking-1"} if kind == "credits.charge" else {"reason": "goodwill"}
    return {"id": str(uuid.uuid4()), "type": kind, "userId": user, "payload": payload}


def assert_pay007(response) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body.keys() == {"code", "message", "details"} and body["code"] == "PAY007", body
    assert any("credits" in str(e.get("key")) for e in body["details"]["errors"]), body


async def test_http_refuses_lookalike_credits_and_changes_nothing(http, engine, user_id):
    funded = await http.post(
        "/payment/credits/grant", json={"userId": user_id, "credits": 10, "reason": "seed"},
        headers=auth("ops-admin", "admin"),
    )
    assert funded.status_code == 200, funded.text
    before = await ledger_of(engine, user_id)
    assert before == ((10, 0), 1, 1)
    for value in HTTP_IMPOSTORS:
        assert_pay007(await http.post(
            "/payment/credits/grant",
            json={"userId": user_id, "credits": value, "reason": "goodwill"},
            headers=auth("ops-admin", "admin"),
        ))
        for kind in ("credits.charge", "credits.grant"):
            assert_pay007(await http.post(
                "/payment/commands/", json=command_body(user_id, kind, value),
                headers=auth("booking-service", "service"),
            ))
        assert_pay007(await http.post(
            "/payment/credits/transfer",
            json={"fromUserId": user_id, "toUserId": f"{user_id}-to", "credits": value,
                  "reason": "merge"},
            headers=auth("root", "admin"),
        ))
    await asyncio.sleep(0.5)  # anything published by mistake would have been applied by now
    assert await ledger_of(engine, user_id) == before
    assert await ledger_of(engine, f"{user_id}-to") == (None, 0, 0)
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"], balance["total"]) == (10, 0, 10)


async def test_http_refuses_lookalike_booleans(http, pack):
    path = f"/payment/credit-packs/{pack['id']}"
    for value in ("false", 0, "0", "no"):
        response = await http.patch(path, json={"active": value}, headers=auth("admin-1", "admin"))
        assert response.status_code == 422, (value, response.text)
        assert response.json()["code"] == "PAY007"
    assert (await http.get(path)).json()["active"] is True


async def test_openapi_still_documents_integers_and_booleans(http):
    components = (await http.get("/payment/openapi.json")).json()["components"]["schemas"]
    assert components["GrantRequest"]["properties"]["credits"]["type"] == "integer"
    assert components["ChargePayload"]["properties"]["credits"]["type"] == "integer"
    active = components["PackUpdate"]["properties"]["active"]
    assert {"type": "boolean"} in active["anyOf"], active


# --- over Kafka ----------------------------------------------------------------------------


async def test_kafka_dead_letters_lookalike_credits_and_applies_nothing(
    settings, engine, worker, producer, user_id
):
    funding = GrantCredits(user_id=user_id, payload=GrantPayload(credits=10, reason="seed"))
    await publish(producer, settings, funding)
    assert (await wait_processed(engine, [funding.id]))[funding.id]["status"] == "applied"
    marker = uuid.uuid4().hex
    poison: dict[bytes, uuid.UUID] = {}
    for value in ('"3"', "true", "3.0"):
        for command in (
            ChargeCredits(user_id=user_id, payload=ChargePayload(credits=3, reference=marker)),
            GrantCredits(user_id=user_id, payload=GrantPayload(credits=3, reason=marker)),
        ):
            raw = command.model_dump_json()
            assert '"credits":3,' in raw
            poison[raw.replace('"credits":3,', f'"credits":{value},').encode()] = command.id
    for raw in poison:
        await producer.send_and_wait(settings.commands_topic, value=raw, key=user_id.encode())
    sentinel = ChargeCredits(user_id=user_id, payload=ChargePayload(credits=1, reference="s"))
    await publish(producer, settings, sentinel)  # same key: read after every poison message
    assert (await wait_processed(engine, [sentinel.id]))[sentinel.id]["status"] == "applied"
    reasons = await dead_letters(settings, lambda value: value in poison, len(poison))
    assert set(reasons) == set(poison), "every look-alike is dead-lettered byte for byte"
    for reason in reasons.values():
        assert "payload.credits" in reason and "integer" in reason, reason
    assert await wait_processed(engine, list(poison.values()), timeout=0) == {}
    assert await ledger_of(engine, user_id) == ((9, 0), 2, 2)
