"""devtools/processes.py: how the local stack, the bench, the fault suite and the test
fixtures start, wait for and stop their children (no service needed)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from devtools import processes
from services.settings import Settings

IGNORES_SIGTERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('up', flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_child_writes_to_its_log_and_stops_on_sigterm(tmp_path: Path):
    log = tmp_path / "logs" / "child.log"
    child = processes.spawn([sys.executable, "-c", "import time; print('hello', flush=True); time.sleep(60)"],
                            log=log)
    assert processes.wait_until(lambda: "hello" in log.read_text(), 10, process=child)
    processes.stop(child, grace=10)
    assert child.returncode == -15  # SIGTERM was enough
    assert not processes.alive(child)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path):
    log = tmp_path / "stubborn.log"
    child = processes.spawn([sys.executable, "-c", IGNORES_SIGTERM], log=log, new_session=True)
    assert processes.wait_until(lambda: "up" in log.read_text(), 10, process=child)
    started = time.monotonic()
    processes.stop_all([child], grace=0.5)
    assert child.returncode == -9
    assert time.monotonic() - started < 5


def test_waiting_gives_up_once_the_child_has_exited():
    child = processes.spawn([sys.executable, "-c", "raise SystemExit(3)"], discard_output=True)
    started = time.monotonic()
    assert not processes.wait_until(lambda: False, 30, process=child)
    assert time.monotonic() - started < 10 and child.returncode == 3


def test_wait_port_sees_a_listening_socket():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        processes.wait_port("127.0.0.1", port, seconds=5)
        assert processes.port_open("127.0.0.1", port)


def test_children_see_the_given_settings_and_find_the_toolkit():
    settings = Settings(topic_prefix="env-check-", kafka_command_partitions=7)
    env = processes.toolkit_env(processes.settings_env(settings, base={"PYTHONPATH": "/elsewhere"}))
    assert (env["TOPIC_PREFIX"], env["KAFKA_COMMAND_PARTITIONS"]) == ("env-check-", "7")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(processes.ROOT), "/elsewhere"]
    # From any working directory, `python -m devtools` is found through PYTHONPATH.
    shown = subprocess.run(processes.devtools_command("--help"), env={**os.environ, **env},
                           cwd="/", capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: python -m devtools")
    assert processes.service_command("worker")[-3:] == ["-m", "ops.cli", "worker"]
