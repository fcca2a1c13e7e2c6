"""`check_contract()` and `Payments.start()` against a service that speaks another
contract. No such service can run here (there is one version), so the served document
is this client's own, changed the way a newer service would change it, behind httpx's
mock transport; against the real ingress the check is run by the service's suite."""

import copy
from typing import Any

import httpx
import pytest

from pika_payment_client import BrokerSettings, Payments, PaymentsHttp, SchemaVersionMismatch
from pika_payment_client.contracts.commands import COMMAND_MODELS
from pika_payment_client.contracts.events import EVENT_MODELS


def served_by_us() -> dict[str, Any]:
    def of(models: tuple[type[Any], ...]) -> dict[str, Any]:
        out = {}
        for model in models:
            schema = model.model_json_schema(by_alias=True)
            out[schema["properties"]["type"].get("const") or model.__name__] = schema
        return out

    return {"commands": of(COMMAND_MODELS), "events": of(EVENT_MODELS)}


def client_of(document: dict[str, Any]) -> PaymentsHttp:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/payment/schemas"
        return httpx.Response(200, json=document)

    transport = httpx.AsyncClient(base_url="http://payments", transport=httpx.MockTransport(answer))
    return PaymentsHttp("http://payments", "token", client=transport)


async def test_the_same_contracts_are_identical() -> None:
    check = await client_of(served_by_us()).check_contract()

    assert check.identical and check.schema_version == 1


async def test_a_changed_or_missing_message_is_reported() -> None:
    document = served_by_us()
    document["commands"]["credits.charge"]["properties"]["payload"]["description"] = "changed"
    del document["events"]["balance.changed"]

    check = await client_of(document).check_contract()

    assert check.differing == ("credits.charge",) and check.missing == ("balance.changed",)


async def test_another_schema_version_is_refused_before_anything_is_published() -> None:
    document = copy.deepcopy(served_by_us())
    document["commands"]["credits.charge"]["properties"]["schemaVersion"]["const"] = 2

    with pytest.raises(SchemaVersionMismatch, match="schemaVersion 2"):
        await client_of(document).check_contract()
    # Payments checks before it connects: the broker below is never reached.
    payments = Payments(BrokerSettings("127.0.0.1:1"), source="booking", http=client_of(document))
    with pytest.raises(SchemaVersionMismatch):
        await payments.start()
