"""The command registry: one place knows every domain, and the ledger knows none."""

import ast
import typing
from pathlib import Path

from schemas.commands import Command
from services.bootstrap import command_handlers, command_registry
from services.purchases.claims import claim_returned_credits

LEDGER = Path(__file__).resolve().parent.parent / "services" / "ledger"
DOMAINS = ("services.purchases", "services.memberships", "services.fraud")


def command_types() -> set[str]:
    union = typing.get_args(Command)[0]
    return {model.model_fields["type"].default for model in typing.get_args(union)}


def test_every_command_type_has_exactly_the_handler_the_registry_names():
    assert set(command_handlers()) == command_types()


def test_the_registry_wires_purchases_as_the_claimant_of_returned_credits():
    assert command_registry().return_claims is claim_returned_credits


def test_the_ledger_imports_none_of_the_domains_built_on_it():
    offenders = []
    for path in sorted(LEDGER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
            offenders += [
                f"{path.relative_to(LEDGER)}: {name}"
                for name in names
                if name.startswith(DOMAINS)
            ]
    assert offenders == []
