"""The one way the development toolkit and the tests start and stop child processes.

The local stack, the benchmarks, the fault suite and the test fixtures all run the
service's own commands (`pika-payment worker`, `relay`, ...) and a few helpers (tansu,
redis-server, aiosmtpd, localstripe) as child processes. They need the same few
things, kept here so that they behave alike: the environment that makes a child see
given settings, a log file per child, waiting until the child answers, and stopping it
with SIGTERM, then SIGKILL once a grace period has passed.
"""

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeGuard

from services.settings import Settings

# The repository root: `python -m devtools` children find the toolkit there.
ROOT = Path(__file__).resolve().parent.parent
Process = subprocess.Popen[bytes]


def service_command(name: str, *, profile_to: Path | None = None) -> list[str]:
    """`pika-payment <name>` as this interpreter runs it; under cProfile with `profile_to`
    (the stats file is written when the child stops on SIGTERM)."""
    if profile_to is not None:
        return [sys.executable, "-m", "cProfile", "-o", str(profile_to), "-m", "ops.cli", name]
    return [sys.executable, "-m", "ops.cli", name]


def devtools_command(*args: str) -> list[str]:
    """`python -m devtools <args>`: spawn it with `toolkit_env` (it is not installed)."""
    return [sys.executable, "-m", "devtools", *args]


def toolkit_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with the repository root first on PYTHONPATH, so `-m devtools` imports
    whatever the child's working directory."""
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    return {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), *paths])}


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment that makes a child process see exactly `settings` (upper-case
    names over `base`, by default this process's environment)."""
    env = dict(os.environ if base is None else base)
    for key, value in settings.model_dump().items():
        if value is not None:
            env[key.upper()] = str(value)
    return env


def spawn(
    command: list[str],
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    new_session: bool = False,
    discard_output: bool = False,
) -> Process:
    """Start `command` with stdout and stderr appended to `log` (inherited without one,
    thrown away with `discard_output`). `new_session` keeps the terminal's Ctrl-C away
    from the child: whoever started it stops it, in order."""
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:  # the child keeps its own descriptor
            return subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=new_session)
    output = subprocess.DEVNULL if discard_output else None
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=output, stderr=output,
                            start_new_session=new_session)


def alive(process: Process | None) -> TypeGuard[Process]:
    return process is not None and process.poll() is None


def terminate(process: Process | None) -> None:
    """SIGTERM, so the child runs its shutdown code; `wait_or_kill` then reaps it."""
    if alive(process):
        process.terminate()


def wait_or_kill(process: Process | None, seconds: float) -> None:
    """Wait up to `seconds` for the child to exit, then SIGKILL it."""
    if process is None:
        return
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop(process: Process | None, grace: float) -> None:
    """SIGTERM, then SIGKILL if the child is still there after `grace` seconds."""
    if alive(process):
        terminate(process)
        wait_or_kill(process, grace)


def stop_all(processes: Iterable[Process], grace: float) -> None:
    """SIGTERM every child first (they shut down side by side), then give each `grace`
    seconds before SIGKILL."""
    children = list(processes)
    for child in children:
        terminate(child)
    for child in children:
        wait_or_kill(child, grace)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    ready: Callable[[], bool], seconds: float, *, interval: float = 0.1, process: Process | None = None
) -> bool:
    """Whether `ready()` came true within `seconds`; gives up early once `process` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(interval)
    return False


async def wait_until_async(
    ready: Callable[[], Awaitable[bool]],
    seconds: float,
    *,
    interval: float = 0.2,
    process: Process | None = None,
) -> bool:
    """`wait_until` for a check that awaits (the event loop keeps running meanwhile)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        if await ready():
            return True
        await asyncio.sleep(interval)
    return False


def wait_port(host: str, port: int, seconds: float = 20) -> None:
    if not wait_until(lambda: port_open(host, port), seconds):
        raise RuntimeError(f"{host}:{port} did not open within {seconds}s")
