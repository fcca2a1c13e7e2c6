"""The suite's workers and relays, watched together: counters, logs, deaths, shutdown."""

import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from devtools.faults.child import Child
from services.settings import Settings


@dataclass
class Fleet:
    """The suite's workers and relays (two of each, as in docker-compose and k8s)."""

    workers: list[Child] = field(default_factory=list)
    relays: list[Child] = field(default_factory=list)

    @property
    def children(self) -> list[Child]:
        return [*self.workers, *self.relays]

    def start(self, settings: Settings, log_dir: Path) -> None:
        for n in (1, 2):
            self.workers.append(Child(f"worker-{n}", "worker", settings, log_dir))
            self.relays.append(Child(f"relay-{n}", "relay", settings, log_dir))
        for child in self.children:
            child.start()

    async def scrape(self) -> None:
        await asyncio.gather(*(child.scrape() for child in self.workers))

    def worker_counter(self, name: str) -> float:
        return sum(child.counter(name) for child in self.workers)

    def active_relay(self) -> Child | None:
        """The relay that holds the advisory lock, if one does."""
        return next((relay for relay in self.relays if relay.is_active_relay()), None)

    async def has_active_relay(self) -> bool:
        """`active_relay` as a predicate for `wait_for`."""
        return self.active_relay() is not None

    def log_marks(self) -> dict[Path, int]:
        """Where each child log ends now, so a scenario can read only its own lines."""
        return {path: path.stat().st_size for c in self.children for path in c.log_paths
                if path.exists()}

    def log_summary(self, marks: dict[Path, int]) -> Counter[str]:
        """Warnings and errors the children logged since `marks`, numbers folded."""
        found: Counter[str] = Counter()
        for child in self.children:
            for path in child.log_paths:
                with contextlib.suppress(OSError), open(path, "rb") as log:
                    log.seek(marks.get(path, 0))
                    for line in log.read().decode(errors="replace").splitlines():
                        with contextlib.suppress(ValueError, KeyError, TypeError):
                            entry = json.loads(line)
                            if entry["level"] in ("warning", "error", "critical"):
                                text = re.sub(r"\d+(\.\d+)?", "N", str(entry["msg"]))[:110]
                                found[f"{child.command} {entry['level']}: {text}"] += 1
        return found

    def check_exits(self) -> list[str]:
        return [what for child in self.children if (what := child.check_exit())]

    def stop_all(self) -> None:
        for child in self.children:
            child.stop()
        deadline = time.monotonic() + 15
        for child in self.children:
            child.wait_stopped(max(0.1, deadline - time.monotonic()))
