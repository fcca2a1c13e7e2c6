"""The committed TypeScript types (clients/typescript/) are what the service serves today.

devtools.typescript_types writes the OpenAPI document, the event and WebSocket JSON
Schemas and, with the generators pinned in clients/typescript/package-lock.json, the
TypeScript files a frontend imports. This test does it again into a temporary
directory and compares byte for byte: a changed endpoint, model or event that was not
followed by `make ts-types` fails here, not in a frontend's build. `tsc --strict`
(pinned too) compiles the generated files, so the committed types are usable as they are.
"""

import json
import shutil
import uuid
from pathlib import Path
from typing import Any, cast

import pytest

from devtools import typescript_types as ts

pytestmark = pytest.mark.timeout(300)


def _require_generators() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the TypeScript generators run on Node.js 20+")
    for tool in ("openapi-typescript", "json2ts", "tsc"):
        if not (ts.BIN / tool).exists():
            pytest.fail(f"{tool} is not installed: run `make typescript-generators` (needs npm)")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_generators()
    out = tmp_path_factory.mktemp("typescript")
    ts.generate(out)
    return out


def test_the_generators_are_pinned_exactly_and_installed_as_locked() -> None:
    package = json.loads((ts.PACKAGE / "package.json").read_text())
    lock = json.loads((ts.PACKAGE / "package-lock.json").read_text())
    assert set(package["dependencies"]) == {"openapi-typescript", "json-schema-to-typescript",
                                            "typescript"}
    for name, version in package["dependencies"].items():
        assert version[0].isdigit(), f"{name} must be an exact version, not {version!r}"
        locked = lock["packages"][f"node_modules/{name}"]
        assert locked["version"] == version and locked["integrity"].startswith("sha512-")
        installed = ts.PACKAGE / "node_modules" / name / "package.json"
        if installed.exists():
            assert json.loads(installed.read_text())["version"] == version, (
                "clients/typescript/node_modules is stale: run `make typescript-generators`"
            )


@pytest.mark.parametrize("name", ts.GENERATED)
def test_the_committed_file_is_what_the_service_generates_today(generated: Path, name: str) -> None:
    committed = ts.PACKAGE / name
    assert committed.exists(), f"clients/typescript/{name} is missing: run `make ts-types`"
    assert (generated / name).read_bytes() == committed.read_bytes(), (
        f"clients/typescript/{name} differs from what the service serves: run `make ts-types`"
    )


def test_the_types_name_the_api_the_events_and_the_frames(generated: Path) -> None:
    """Guards against a generator that writes next to nothing and compares equal."""
    from schemas.events import EVENT_MODELS

    api = (generated / "src" / "api.ts").read_text()
    for path in ("/payment/credits/balance", "/payment/credits/history",
                 "/payment/credit-packs/{pack_id}/purchase", "/payment/commands/{command_id}"):
        assert f'"{path}": {{' in api, path
    assert "export interface components" in api and "BalanceRead: {" in api
    events = (generated / "src" / "events.ts").read_text()
    assert "export type PaymentEvent =" in events
    for model in EVENT_MODELS:
        assert f"export interface {model.__name__} {{" in events, model.__name__
    for kind in ('"balance.changed"', '"credits.charged"', '"payment.succeeded"',
                 '"credits.charge.rejected"'):
        assert f"type: {kind}" in events or f"| {kind}" in events, kind
    live = (generated / "src" / "live.ts").read_text()
    for name in ("LiveClientMessage", "LiveServerMessage"):
        assert f"export type {name} =" in live
    assert 'type: "auth"' in live and 'type: "balance.changed"' in live


def test_the_generated_files_compile_with_strict_tsc(generated: Path) -> None:
    _require_generators()
    ts.type_check(generated)


def test_the_hub_sends_the_typed_balance_changed_frame() -> None:
    """ingress.live builds its frame from the event by hand: it must stay LiveBalanceChanged."""
    from ingress.live import BalanceHub
    from schemas.events import BalanceChanged, BalanceChangedPayload
    from schemas.live import LiveBalanceChanged, live_server_adapter

    event = BalanceChanged(user_id="ts-user", payload=BalanceChangedPayload(
        available=7, held=3, total=10, delta=-2, held_delta=2,
        transaction_id=uuid.uuid4(), transaction_type="CREDIT_HOLD"))
    hub = BalanceHub(cast(Any, None))
    subscription = hub.subscribe("ts-user")
    hub.dispatch(event.model_dump_json().encode())
    frame = json.loads(subscription.pending.popleft())  # the hub queues serialized text
    typed = live_server_adapter.validate_python(frame)
    assert isinstance(typed, LiveBalanceChanged) and typed.event_id == event.id
    assert set(frame) == set(LiveBalanceChanged.model_json_schema(by_alias=True)["properties"])
