"""The fault suite's short form (`python -m devtools faults --short`) as part of `make test`.

It runs as a child process, exactly as an operator would run it, and builds its own
world: database, tansu broker, workers and relays. It uses no fixture of conftest on
purpose: scenario (b) restarts the Postgres server, which must not pull the rug from
under a session fixture. The file is named to sort last, so the restart happens after
every other test has finished with that server.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ("a", "b", "c", "d")
ROW = re.compile(r"^([abcd]): ")


def faults_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    # A throw-away local stack with the development secrets, as `make faults` runs it.
    env["PAYMENT_DEV_MODE"] = "true"
    return env


def postgres_restartable(database_url: str) -> bool:
    """Scenario (b) may only be skipped where the suite cannot restart the server."""
    host = urlsplit(database_url.replace("+asyncpg", "")).hostname or "127.0.0.1"
    return host in {"127.0.0.1", "localhost", "::1"} and shutil.which("pg_ctlcluster") is not None


def discrepancies_by_scenario(table: str) -> dict[str, str]:
    """The last cell of each scenario row; rows may wrap, their first line has the counts."""
    found: dict[str, str] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in re.split(r"[│|]", line)]
        if len(cells) > 3 and (match := ROW.match(cells[1])):
            found[match.group(1)] = cells[-2]
    return found


@pytest.mark.timeout(420)
def test_fault_suite_short_form_reports_no_discrepancy() -> None:
    env = faults_env()
    suite = subprocess.Popen(
        [sys.executable, "-m", "devtools", "faults", "--short"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = suite.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the suite then stops its children, makes sure Postgres
        # is running and drops its database before it exits.
        suite.send_signal(signal.SIGTERM)
        out, err = suite.communicate(timeout=90)
        pytest.fail(f"fault suite took over 300 s\n{out}\n{err[-4000:]}")
    report = f"stdout:\n{out}\nstderr (tail):\n{err[-6000:]}"
    assert suite.returncode == 0, report
    rows = discrepancies_by_scenario(out)
    assert sorted(rows) == list(SCENARIOS), report
    for scenario, discrepancies in rows.items():
        if scenario == "b" and discrepancies == "skipped":
            assert not postgres_restartable(env["DATABASE_URL"]), report
            continue
        assert discrepancies == "0", f"scenario {scenario}: {discrepancies}\n{report}"
    assert re.search(r"^faults: 0 discrepancies in [34] scenarios run", out, re.M), report
