"""Layering, checked on the source: HTTP controllers neither open transactions nor hold
SQL (they parse, authorize, call a use case and map errors), and SQL lives only in
modules whose name says they are stores.

Read as text and syntax trees, never imported: the rules are about where code is
written, and a rule broken by a new module must fail here before it spreads.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTROLLERS = ROOT / "ingress" / "controllers"
PRODUCTION = ("services", "adapters", "workers", "ingress", "ops")

SQL = re.compile(r"\bSELECT\s|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b")
# In a controller any of these is suspicious, even without the rest of a statement.
CONTROLLER_SQL = re.compile(r"\bSELECT\s|\bINSERT\s+INTO\b|\bUPDATE\s|\bDELETE\s+FROM\b")
SQLALCHEMY_BUILDERS = {"text", "select", "insert", "update", "delete"}

# Names that mark a module as a store: it may hold SQL.
STORE_NAME = re.compile(r"(store|repository|queries)[a-z_]*\.py$")
STORES = {
    "services/db.py",  # ensure_database and the readiness ping: the database itself
}

# Modules that still run SQL of their own, each to move into a store (issue 17).
# Listed so the rule holds for every other module, and so that a module that loses
# its SQL must leave the list (see test_the_lists_are_not_stale).
SQL_NOT_YET_IN_A_STORE: set[str] = set()


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _strings(tree: ast.AST) -> list[str]:
    """Every string in code (docstrings and comments are prose, not SQL); an f-string
    with `x` for each placeholder, so `f"UPDATE {table} SET"` still reads as SQL."""
    skip = _docstrings(tree)
    inside_fstrings = {
        id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values
    }
    strings = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            strings.append("".join(
                part.value if isinstance(part, ast.Constant) and isinstance(part.value, str) else "x"
                for part in node.values
            ))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in skip and id(node) not in inside_fstrings):
            strings.append(node.value)
    return strings


def _sqlalchemy_builders(tree: ast.AST) -> list[str]:
    """`text`, `select`, ... imported from SQLAlchemy, or called as `sa.text(...)`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found += [alias.name for alias in node.names if alias.name in SQLALCHEMY_BUILDERS]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id in {"sa", "sqlalchemy"}
                and node.func.attr in SQLALCHEMY_BUILDERS):
            found.append(f"{node.func.value.id}.{node.func.attr}")
    return found


def holds_sql(source: str, keywords: re.Pattern[str] = SQL) -> bool:
    tree = ast.parse(source)
    return bool(_sqlalchemy_builders(tree)) or any(keywords.search(s) for s in _strings(tree))


def engine_transactions(source: str) -> list[str]:
    """Calls such as `res.engine.begin()` or `self.engine.connect()`."""
    return [
        ast.unparse(node.func)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"begin", "connect"}
        and ast.unparse(node.func.value).split(".")[-1] == "engine"
    ]


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _production_modules() -> list[Path]:
    return sorted(path for folder in PRODUCTION for path in (ROOT / folder).rglob("*.py"))


def test_the_checks_see_sql_and_transactions() -> None:
    """The detectors themselves, so a rule cannot pass by seeing nothing."""
    assert holds_sql('Q = "SELECT id FROM accounts"')
    assert holds_sql('def f(t):\n    return f"UPDATE {t} SET a = 1"')
    assert holds_sql("from sqlalchemy import text\n")
    assert holds_sql("import sqlalchemy as sa\nq = sa.select(1)\n")
    assert not holds_sql('"""Reads: SELECT only, no INSERT INTO."""\n')
    assert not holds_sql("# SELECT 1\nx = 1\n")
    block = "async def f(res, self, uow):\n    async with {} as c:\n        pass\n"
    assert engine_transactions(block.format("res.engine.begin()"))
    assert engine_transactions(block.format("self.engine.connect()"))
    assert not engine_transactions(block.format("uow.begin()"))


@pytest.mark.parametrize("path", sorted(CONTROLLERS.glob("*.py")), ids=lambda p: p.name)
def test_controllers_open_no_transaction_and_hold_no_sql(path: Path) -> None:
    """A controller parses, authorizes, calls a use case (`services/*/use_cases.py`)
    and maps errors; the use case owns the unit of work, a store owns the SQL."""
    source = path.read_text()
    assert engine_transactions(source) == [], "open the unit of work in a services use case"
    assert not holds_sql(source, CONTROLLER_SQL), "SQL belongs in a store or queries module"


def test_sql_lives_only_in_stores() -> None:
    offenders = []
    for path in _production_modules():
        name = _relative(path)
        if STORE_NAME.search(path.name) or name in STORES or name in SQL_NOT_YET_IN_A_STORE:
            continue
        if holds_sql(path.read_text()):
            offenders.append(name)
    assert offenders == [], (
        "SQL outside a store: move it into the domain's *store.py / *queries.py module"
    )


def test_the_lists_are_not_stale() -> None:
    """A module that no longer holds SQL leaves SQL_NOT_YET_IN_A_STORE (one that moved
    away is the mover's to drop)."""
    stale = [
        name for name in sorted(SQL_NOT_YET_IN_A_STORE)
        if (ROOT / name).exists() and not holds_sql((ROOT / name).read_text())
    ]
    assert stale == []
