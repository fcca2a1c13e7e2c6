"""The worker and relay the end-to-end phases run as child processes, and their /metrics.

Each child is `pika-payment <name>` in its own process, as in production, with the
bench's settings passed through the environment and a free port to scrape.
"""

import asyncio
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from devtools.processes import (
    ROOT,
    Process,
    free_port,
    service_command,
    settings_env,
    wait_until_async,
)
from devtools.processes import (
    spawn as spawn_process,
)
from devtools.stack import RUN_DIR
from services.settings import Settings


@dataclass
class Child:
    name: str  # "worker-2": the role, and which of its processes
    process: Process
    log: Path
    metrics_port: int

    @property
    def role(self) -> str:
        """The `pika-payment` command it runs ("worker", "relay"): what the notes group by."""
        return self.name.split("-", 1)[0]


def spawn(name: str, settings: Settings, tag: str) -> Child:
    """`pika-payment <role>` (`name` is "<role>" or "<role>-<n>") with the bench's
    settings and a /metrics port to scrape.

    With PIKA_BENCH_PROFILE=<dir> in the environment, each child runs under cProfile
    and leaves <dir>/<name>.prof (rates drop by the profiler's overhead).
    """
    log = RUN_DIR / f"bench-{tag}-{name}.log"
    port = free_port()
    env = settings_env(settings.model_copy(update={"metrics_port": port}))
    profile_dir = os.environ.get("PIKA_BENCH_PROFILE")
    profile_to = None
    if profile_dir:  # cProfile each child; the stats are written when it stops on SIGTERM
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        profile_to = Path(profile_dir).resolve() / f"{name}.prof"
    role = name.split("-", 1)[0]
    process = spawn_process(service_command(role, profile_to=profile_to), log=log, env=env, cwd=ROOT)
    return Child(name, process, log, port)


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
    """Every role's samples, summed over its processes (in a thread: urllib blocks)."""
    by_role: dict[str, dict[str, float]] = {}
    for child in children:
        samples = by_role.setdefault(child.role, {})
        for name, value in (await asyncio.to_thread(scrape, child)).items():
            samples[name] = samples.get(name, 0.0) + value
    return by_role


async def wait_started(child: Child, seconds: float = 30) -> None:
    """Until the child's /metrics answers (it has imported everything and is running)."""

    async def answers() -> bool:
        try:
            await asyncio.to_thread(scrape, child)
            return True
        except OSError:
            return False

    if await wait_until_async(answers, seconds, process=child.process):
        return
    if child.process.poll() is not None:
        raise RuntimeError(f"{child.name} exited with {child.process.returncode}; see {child.log}")
    raise RuntimeError(f"{child.name} did not start within {seconds:.0f}s; see {child.log}")
