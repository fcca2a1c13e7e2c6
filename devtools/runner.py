"""`python -m devtools run` (`make run`): the whole stack in one terminal, stopped cleanly by Ctrl-C.

Starts what is missing (devtools.stack), migrates, provisions topics, seeds, then
supervises ingress + ledger worker + relay + notify worker as child processes
(restarting one that dies), publishes expiry commands every EXPIRE_INTERVAL_SECONDS
and runs `remind` once at start and then daily.
"""

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from rich.console import Console

from devtools.processes import Process, devtools_command, service_command, spawn, stop_all, toolkit_env
from devtools.stack import RUN_DIR, Stack
from services.settings import Settings

console = Console(stderr=True, soft_wrap=True)
PROCESSES = {"ingress": 0, "worker": 9101, "relay": 9102, "notify": 9103}
REMIND_INTERVAL_SECONDS = 24 * 3600


def _spawn(name: str, env: dict[str, str]) -> Process:
    child_env = dict(env)
    if PROCESSES[name]:
        child_env["METRICS_PORT"] = str(PROCESSES[name])
    return spawn(service_command(name), log=RUN_DIR / f"{name}.log", env=child_env)


def run_stack(settings: Settings, *, with_seed: bool = True) -> int:
    stack = Stack()
    children: dict[str, Process] = {}
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        env = dict(os.environ)
        env["KAFKA_BOOTSTRAP_SERVERS"] = stack.ensure_kafka(settings.kafka_bootstrap_servers)
        env["DATABASE_URL"] = stack.ensure_postgres(settings.database_url)
        env["REDIS_URL"] = stack.ensure_redis(settings.redis_url)
        stack.ensure_smtp(settings.smtp_host, settings.smtp_port)
        env.setdefault("PAYMENT_SERVICE_HOST", "127.0.0.1")
        for note in stack.notes:
            console.print(f"  {note}")
        settings = Settings(**{**settings.model_dump(), "database_url": env["DATABASE_URL"]})
        steps = [("migrate", service_command("migrate"))]
        if with_seed:  # the seed is the toolkit's own: the child finds it on PYTHONPATH
            steps.append(("seed", devtools_command("seed")))
        for step, command in steps:
            if subprocess.run(command, env=toolkit_env(env)).returncode:
                console.print(f"[red]{step} failed[/red]")
                return 1
        for name in PROCESSES:
            children[name] = _spawn(name, env)
        base = f"http://127.0.0.1:{settings.payment_service_port}/payment"
        console.print(
            f"\npika-payment is running (logs in {Path(RUN_DIR).resolve()}):\n"
            f"  API docs       {base}/docs\n"
            f"  OpenAPI        {base}/openapi.json\n"
            f"  AsyncAPI docs  {base}/asyncapi\n"
            f"  Health         {base}/health   (ready: {base}/ready)\n"
            f"  Console        {base}/admin/console   (support; reports: {base}/admin)\n"
            + (
                "  Try it         TOKEN=$(PAYMENT_DEV_MODE=true .venv/bin/python -m devtools token "
                f'--sub demo-alice) && curl -H "Authorization: Bearer $TOKEN" {base}/credits/balance\n'
                if settings.payment_dev_mode else ""
            )
            + "Press Ctrl-C to stop.\n"
        )
        next_expire = time.monotonic() + 5
        next_remind = time.monotonic() + 10
        while not stopping:
            time.sleep(0.5)
            for name, child in list(children.items()):
                if child.poll() is not None and not stopping:
                    console.print(f"[yellow]{name} exited ({child.returncode}); restarting[/yellow]")
                    children[name] = _spawn(name, env)
            if time.monotonic() >= next_expire:
                next_expire = time.monotonic() + settings.expire_interval_seconds
                _expire(settings, env)
            if time.monotonic() >= next_remind:
                next_remind = time.monotonic() + REMIND_INTERVAL_SECONDS
                _remind(settings)
        return 0
    finally:
        console.print("stopping…")
        stop_all(children.values(), grace=15)
        stack.stop()
        console.print("stopped")


def _expire(settings: Settings, env: dict[str, str]) -> None:
    from ops.expire import publish_expiries
    from services.db import make_engine

    async def go() -> int:
        engine = make_engine(settings, pool_size=1)
        try:
            return await publish_expiries(engine, settings)
        finally:
            await engine.dispose()

    try:
        count = asyncio.run(go())
    except Exception as error:  # the next round retries; never take the stack down
        console.print(f"[yellow]expire failed: {type(error).__name__}[/yellow]")
        return
    if count:
        console.print(f"expire: published {count} commands")


def _remind(settings: Settings) -> None:
    """The daily `remind` job; reminding twice is harmless (batches are recorded)."""
    from ops.remind_job import remind_once

    try:
        users, _ = asyncio.run(remind_once(settings))
    except Exception as error:  # tomorrow's round retries; never take the stack down
        console.print(f"[yellow]remind failed: {type(error).__name__}[/yellow]")
        return
    if users:
        console.print(f"remind: published {users} expiry reminders")
