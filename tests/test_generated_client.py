"""A client generated from the served OpenAPI document works against the real ingress.

Other teams generate their clients; if the generator refuses the document, or the
generated code cannot grant, read a balance and page history, the document is wrong.
The client is generated into a temporary directory on every run, never committed.
"""

import importlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.conftest import Ingress, token

PACKAGE = "pika_generated_client"


@pytest.fixture(scope="module")
def generated(ingress: Ingress, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    work = tmp_path_factory.mktemp("client")
    document = httpx.get(f"{ingress.url}/payment/openapi.json", timeout=10)
    assert document.status_code == 200
    (work / "openapi.json").write_text(document.text)
    # The generator's own post hook (ruff format) tidies its templates' output: without
    # it `!= 1and` is left in the code (a SyntaxWarning). Ruff is the test extras' own.
    tools = Path(sys.executable).parent
    (work / "config.json").write_text(json.dumps(
        {"project_name_override": PACKAGE, "package_name_override": PACKAGE,
         "post_hooks": [f"{tools / 'ruff'} format ."]}
    ))
    generator = tools / "openapi-python-client"
    result = subprocess.run(
        [str(generator), "generate", "--path", "openapi.json", "--config", "config.json",
         "--meta", "none"],
        cwd=work, capture_output=True, text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, "the generator skipped something"
    sys.path.insert(0, str(work))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(work))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_generated_client_grants_then_reads_balance_and_history(generated, ingress):
    client_module = _module("client")
    models = _module("models")
    grant_credits = _module("api.credits_.grant_credits")
    get_balance = _module("api.credits_.get_balance")
    get_history = _module("api.credits_.get_history")
    user = f"u-gen-{uuid.uuid4().hex[:10]}"
    admin = client_module.AuthenticatedClient(base_url=ingress.url, token=token("gen-admin", "admin"),
                                              raise_on_unexpected_status=True)
    owner = client_module.AuthenticatedClient(base_url=ingress.url, token=token(user),
                                              raise_on_unexpected_status=True)
    key = str(uuid.uuid4())
    body = models.GrantRequest(user_id=user, credits_=12, reason="generated client")
    granted = grant_credits.sync(client=admin, body=body, idempotency_key=key)
    assert isinstance(granted, models.CommandAppliedRead), granted
    replayed = grant_credits.sync(client=admin, body=body, idempotency_key=key)
    assert replayed.command_id == granted.command_id, "the key replays through generated code"

    balance = get_balance.sync(client=owner)
    assert isinstance(balance, models.BalanceRead), balance
    assert (balance.available, balance.held, balance.total) == (12, 0, 12)
    assert [b.remaining for b in balance.batches] == [12]

    history = get_history.sync(client=owner, limit=1)
    assert isinstance(history, models.HistoryPage), history
    assert [(t.type_, t.credits_, t.balance_after) for t in history.items] == [
        ("ADJUSTMENT", 12, 12)]
    assert history.has_more is False and history.next_cursor is None

    refused = get_balance.sync(client=client_module.AuthenticatedClient(
        base_url=ingress.url, token="not-a-token"))
    assert isinstance(refused, models.ErrorBody) and refused.code == "PAY009"
