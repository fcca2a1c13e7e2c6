"""Imports point downhill: schemas <- services <- adapters / workers <- ingress <- ops.

The services know Stripe, Kafka and HTTP only through their ports; the product never
imports the development toolkit; the core ledger does not know the domains built on it
(they register their handlers in services/bootstrap.py). Read from the source with `ast`,
so a new import that breaks a floor fails here rather than in review.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Each top-level package and the other top-level packages it may import.
MAY_IMPORT: dict[str, set[str]] = {
    "schemas": set(),
    "services": {"schemas"},
    "adapters": {"schemas", "services"},
    "workers": {"schemas", "services"},
    # The AsyncAPI page is generated from the workers' subscriber declarations.
    "ingress": {"schemas", "services", "adapters", "workers"},
    "ops": {"schemas", "services", "adapters", "workers", "ingress"},
    "migrations": {"services"},
}
OURS = {*MAY_IMPORT, "devtools"}
# The core ledger is the floor the domains stand on.
LEDGER_MUST_NOT_IMPORT = ("services.purchases", "services.memberships", "services.fraud",
                          "services.promos", "services.notifications", "services.reports")


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_every_package_imports_only_the_floors_below_it():
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sources(package):
            for module in imports_of(path):
                top = module.split(".", 1)[0]
                if top in OURS and top != package and top not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "imports that run uphill:\n" + "\n".join(wrong)


def test_the_core_ledger_does_not_import_the_domains_built_on_it():
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sources("services/ledger")
        for module in imports_of(path)
        if module.startswith(LEDGER_MUST_NOT_IMPORT)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_imports():
    """Guard against a test that cannot fail: the ledger worker does import the ledger."""
    assert any(m.startswith("services.ledger") for m in imports_of(ROOT / "workers" / "ledger.py"))
