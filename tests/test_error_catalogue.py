"""The PAY error catalogue is the one list of codes: the docs and the OpenAPI document agree with it."""

import re
from pathlib import Path

from ingress.app import create_app
from ingress.errors import ERROR_DESCRIPTIONS
from services import errors
from services.errors import ALL_ERRORS, ERROR_CATALOGUE, PaymentError, status_of
from services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED_ROW = re.compile(r"^\| (PAY\d{3}) \| (\d{3}) \|", re.M)


def documented_codes() -> set[tuple[str, int]]:
    """(code, status) of every row of the docs' error tables, wherever the docs keep them."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {
        (code, int(status))
        for page in pages
        for code, status in DOCUMENTED_ROW.findall(page.read_text())
    }


def test_the_catalogue_has_every_error_class_once():
    defined = {
        value for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, PaymentError)
    }
    assert set(ALL_ERRORS) == defined
    assert len(ERROR_CATALOGUE) == len(ALL_ERRORS), "one code per class"
    for error in ALL_ERRORS:
        assert ERROR_CATALOGUE[error.code] == (error.status, error.title, error.description)
        assert status_of(error.code) == error.status
    assert status_of(None) == status_of("PAY999") == 500


def test_the_docs_error_table_lists_exactly_the_catalogue():
    catalogue = {(code, entry.status) for code, entry in ERROR_CATALOGUE.items()}
    documented = documented_codes()
    assert catalogue - documented == set(), "codes the docs do not list"
    assert documented - catalogue == set(), "documented codes the service does not have"


def test_openapi_error_responses_name_the_codes_of_their_status():
    document = create_app(Settings()).openapi_schema.to_schema()
    assert set(re.findall(r"PAY\d{3}", document["info"]["description"])) >= set(ERROR_CATALOGUE)
    checked = 0
    for operations in document["paths"].values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                if int(status) < 400:
                    continue
                named = set(re.findall(r"PAY\d{3}", response["description"]))
                expected = {c for c, e in ERROR_CATALOGUE.items() if e.status == int(status)}
                assert named == expected, (status, response["description"])
                checked += 1
    assert checked > 100
    assert set(ERROR_DESCRIPTIONS) == {e.status for e in ERROR_CATALOGUE.values()}
