"""Schemathesis over the OpenAPI document the running ingress serves.

Every operation (but the signed Stripe webhook and the WebSocket) gets a bounded number
of generated requests, valid and invalid, once as a plain user and once as an admin.
Checks: no 5xx (`not_a_server_error`), and every response whose status is documented
matches its documented schema (`response_schema_conformance`). Status-code conformance is
not checked: a 4xx the document does not list is accepted, but only with the service's
error shape `{"code": "PAY0xx", "message", "details"}` (asserted for every 4xx here).

Schemathesis' pytest integration (`from_fixture`) fails on pytest 9.2 (test nodes no
longer have `_nodeid`), so the operations are looped over here, each with its own
derandomized Hypothesis run (no example database, no shrinking: same cases every run).
"""

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.conftest import Ingress, auth

MAX_EXAMPLES = 25
PAY_CODE = re.compile(r"^PAY\d{3}$")
CHECKS = [not_a_server_error, response_schema_conformance]
EXCLUDED_PATHS = ("/payment/webhooks/", "/payment/ws")
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # repeatable in CI: the same cases on every run
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failing case is reported
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def api_schema(ingress: Ingress) -> Any:
    schema = schemathesis.openapi.from_url(f"{ingress.url}/payment/openapi.json", timeout=10)
    schema.config.update(base_url=ingress.url, request_timeout=30)
    return schema


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as opened:
        yield opened


def operations(schema: Any) -> list[Any]:
    found = [result.ok() for result in schema.get_all_operations()]
    kept = [op for op in found if not op.path.startswith(EXCLUDED_PATHS)]
    ids = {op.definition.raw.get("operationId") for op in kept}
    assert {"getBalance", "grantCredits", "purchaseCreditPack", "subscribeMembership"} <= ids, ids
    return kept


def check_response(case: Any, session: requests.Session, headers: dict[str, str]) -> None:
    sent = dict(headers)
    if case.method.upper() == "POST":
        sent["Idempotency-Key"] = str(uuid.uuid4())
    response = case.call_and_validate(session=session, headers=sent, checks=CHECKS)
    if 400 <= response.status_code < 500:
        body = response.json()
        shape = (
            isinstance(body, dict)
            and PAY_CODE.match(str(body.get("code"))) is not None
            and isinstance(body.get("message"), str)
            and isinstance(body.get("details", {}), dict)
        )
        assert shape, f"{response.status_code} without the PAY error shape: {response.text[:500]}"


def fuzz_operation(
    operation: Any, mode: GenerationMode, session: requests.Session, headers: dict[str, str]
) -> str | None:
    """A failure report for `operation` in `mode`, or None."""
    last: dict[str, Any] = {}

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        last["case"] = case
        check_response(case, session, headers)

    try:
        run()
    except Unsatisfiable:
        return None  # nothing to make invalid (an operation without parameters or body)
    except (Exception, BaseExceptionGroup) as error:  # schemathesis' FailureGroup is a BaseExceptionGroup
        case = last.get("case")
        curl = case.as_curl_command(headers=headers) if case is not None else "?"
        return f"{operation.label} ({mode.value}): {str(error)[:3000]}\n  {curl}"
    return None


def fuzz(schema: Any, session: requests.Session, headers: dict[str, str]) -> list[str]:
    failures = []
    for operation in operations(schema):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = fuzz_operation(operation, mode, session, headers)
            if failure:
                failures.append(failure)
    return failures


def test_api_as_user(api_schema: Any, session: requests.Session) -> None:
    failures = fuzz(api_schema, session, auth("fuzz-user"))
    assert not failures, "\n\n".join(failures)


def test_api_as_admin(api_schema: Any, session: requests.Session) -> None:
    failures = fuzz(api_schema, session, auth("fuzz-admin", "admin"))
    assert not failures, "\n\n".join(failures)
