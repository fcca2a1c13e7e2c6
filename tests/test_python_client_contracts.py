"""The Python client's contracts (clients/python/.../contracts/) are the service's own.

The client installs without the service, so it carries a generated copy of `schemas/`
(devtools.python_client_contracts). Two checks keep the copy honest:

- byte for byte: the generator runs again into a temporary directory and every file
  must equal the committed one, and the committed folder holds nothing else (a module
  dropped from the generator must not live on in the client);
- by meaning: every command and event model of `schemas` has a model of the same name
  in the copy whose JSON Schema is identical, read from both packages as imported. A
  contract change that was not copied fails here, not in a platform team's booking.
"""

import typing
from pathlib import Path
from typing import Any

import pytest
from pika_payment_client.contracts import commands as client_commands
from pika_payment_client.contracts import events as client_events
from pydantic import BaseModel, TypeAdapter

from devtools import python_client_contracts as generator
from schemas import commands as service_commands
from schemas import events as service_events

RUN = "run `make client-contracts`"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("client-contracts")
    generator.write(out)
    return out


def test_the_committed_copy_is_what_the_generator_writes_today(generated: Path) -> None:
    names = sorted(path.name for path in generated.iterdir())
    assert names == sorted(generator.expected()), "write() and expected() disagree"
    for name in names:
        committed = generator.TARGET / name
        assert committed.exists(), f"{committed.relative_to(generator.ROOT)} is missing: {RUN}"
        assert committed.read_bytes() == (generated / name).read_bytes(), (
            f"{committed.relative_to(generator.ROOT)} differs from schemas/: {RUN}"
        )


def test_the_committed_copy_holds_no_stale_module() -> None:
    committed = {path.name for path in generator.TARGET.glob("*.py")}
    stale = committed - set(generator.expected())
    assert not stale, f"not generated from schemas/ any more: {sorted(stale)}: {RUN}"


def _union_members(annotated: Any) -> list[type[BaseModel]]:
    """The models of an `Annotated[A | B | ..., Field(discriminator=...)]` union."""
    union = typing.get_args(annotated)[0]
    return list(typing.get_args(union))


def _pairs() -> list[tuple[str, type[BaseModel], type[BaseModel] | None]]:
    """(name, service model, client model of that name or None) for every command the
    service accepts (the public ones included) and every event it publishes."""
    service_models: list[type[BaseModel]] = [
        *service_commands.COMMAND_MODELS,
        *_union_members(service_commands.PublicCommand),
        *service_events.EVENT_MODELS,
    ]
    pairs: dict[str, tuple[str, type[BaseModel], type[BaseModel] | None]] = {}
    for model in service_models:
        module = client_commands if model.__module__ == "schemas.commands" else client_events
        pairs[model.__name__] = (model.__name__, model, getattr(module, model.__name__, None))
    return list(pairs.values())


def test_the_checker_sees_the_public_commands_and_the_events() -> None:
    """Guards against a drift check that compares nothing."""
    names = {name for name, _, _ in _pairs()}
    assert {"ChargeCredits", "HoldCredits", "CaptureCredits", "ReleaseCredits",
            "RefundCredits"} <= names
    assert {"BalanceChanged", "CreditsCharged", "CommandRejected"} <= names
    assert len(names) >= len(service_events.EVENT_MODELS) + 5


@pytest.mark.parametrize(
    ("name", "service", "client"), [pytest.param(*pair, id=pair[0]) for pair in _pairs()]
)
def test_every_command_and_event_has_the_same_json_schema_in_the_client(
    name: str, service: type[BaseModel], client: type[BaseModel] | None
) -> None:
    assert client is not None, f"the client has no {name}: {RUN}"
    assert client is not service and client.__module__.startswith("pika_payment_client.")
    for mode in ("validation", "serialization"):
        assert client.model_json_schema(mode=mode) == service.model_json_schema(mode=mode), (
            f"{name}: the client's JSON Schema ({mode}) differs from the service's: {RUN}"
        )


@pytest.mark.parametrize("union", ["PublicCommand", "Command"])
def test_the_command_unions_have_the_same_json_schema(union: str) -> None:
    service = TypeAdapter(getattr(service_commands, union)).json_schema()
    client = TypeAdapter(getattr(client_commands, union)).json_schema()
    assert client == service, f"{union} differs between the client and the service: {RUN}"


def test_the_event_union_has_the_same_json_schema() -> None:
    assert client_events.event_adapter.json_schema() == service_events.event_adapter.json_schema(), (
        f"Event differs between the client and the service: {RUN}"
    )
