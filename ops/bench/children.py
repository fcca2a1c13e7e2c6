"""The worker and relay the end-to-end phases run as child processes, and their /metrics.

Each child is `pika-payment <name>` in its own process, as in production, with the
bench's settings passed through the environment and a free port to scrape.
"""

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ops.stack import RUN_DIR, free_port
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process see exactly `settings`."""
    env = dict(os.environ)
    for key, value in settings.model_dump().items():
        if value is not None:
            env[key.upper()] = str(value)
    return env


def spawn(name: str, settings: Settings, tag: str) -> Child:
    """`pika-payment <name>` with the bench's settings and a /metrics port to scrape.

    With PIKA_BENCH_PROFILE=<dir> in the environment, each child runs under cProfile
    and leaves <dir>/<name>.prof (rates drop by the profiler's overhead).
    """
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    log = RUN_DIR / f"bench-{tag}-{name}.log"
    port = free_port()
    env = settings_env(settings.model_copy(update={"metrics_port": port}))
    command = [sys.executable, "-m", "ops.cli", name]
    profile_dir = os.environ.get("PIKA_BENCH_PROFILE")
    if profile_dir:  # cProfile each child; the stats are written when it stops on SIGTERM
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        output = Path(profile_dir).resolve() / f"{name}.prof"
        command = [sys.executable, "-m", "cProfile", "-o", str(output), "-m", "ops.cli", name]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    return Child(name, process, log, port)


def stop_child(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def scrape(child: Child) -> dict[str, float]:
    """The child's Prometheus samples by name (counters, histogram sums and counts)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{child.metrics_port}/metrics", timeout=2) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "le" not in sample.labels:  # skip histogram buckets, sum over other labels
                samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return samples


async def scrape_all(children: list[Child]) -> dict[str, dict[str, float]]:
    """Every child's samples, by child name (in a thread: urllib blocks)."""
    return {c.name: await asyncio.to_thread(scrape, c) for c in children}


async def wait_started(child: Child, seconds: float = 30) -> None:
    """Until the child's /metrics answers (it has imported everything and is running)."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.process.returncode}; see {child.log}")
        try:
            await asyncio.to_thread(scrape, child)
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{child.name} did not start within {seconds:.0f}s; see {child.log}")
