"""`make run` on a machine without a Postgres server: the embedded fallback."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ops.stack import free_port
from tests.conftest import ROOT


@pytest.mark.timeout(120)
def test_embedded_postgres_starts_answers_and_stops():
    port = free_port()
    script = (
        "import asyncio, asyncpg\n"
        "from ops.stack import Stack, port_open\n"
        "stack = Stack()\n"
        f"url = stack._embedded_postgres('pika_embedded', port={port})\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(url.rsplit('/', 1)[0] + '/postgres')\n"
        "    print('version', await conn.fetchval('SHOW server_version'))\n"
        "    await conn.close()\n"
        "asyncio.run(main())\n"
        "stack.stop()\n"
        f"print('stopped', not port_open('127.0.0.1', {port}))\n"
    )
    # initdb runs as an unprivileged user when we are root: its directory must be
    # reachable by that user (pytest's tmp_path lives under a 0700 directory).
    run_dir = Path(tempfile.mkdtemp(prefix="pika-embedded-"))
    run_dir.chmod(0o755)
    env = {**os.environ, "PIKA_RUN_DIR": str(run_dir)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=100,
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    assert done.returncode == 0, done.stderr
    assert "version 18" in done.stdout
    assert "stopped True" in done.stdout
