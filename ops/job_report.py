"""What a scheduled job (`expire`, `reconcile`, `remind`) reports, for people and for machines.

A CronJob cannot read a progress bar: with `--json` a job prints exactly one JSON object
on stdout (what it counted, its outcome, the problems it found, how long it took) and
nothing else there, and its exit code says whether someone must look. Without `--json`
the same report is the human lines on stderr the jobs always printed.
"""

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

OK = "ok"
DISCREPANCIES = "discrepancies"
FAILED = "failed"


@dataclass
class JobReport:
    """One run of a job; `outcome` is `ok`, `discrepancies` or `failed`."""

    command: str
    started: float = field(default_factory=time.monotonic)
    outcome: str = OK
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "outcome": self.outcome,
            "counts": self.counts,
            "problems": self.problems,
            "duration_seconds": round(time.monotonic() - self.started, 3),
            **self.details,
        }

    def print_json(self) -> None:
        """The one object on stdout: nothing else the job does writes there."""
        sys.stdout.write(json.dumps(self.as_dict(), default=str) + "\n")
        sys.stdout.flush()


def progress_bar(
    console: Console, label: str, quiet: bool = False
) -> tuple[Progress, Callable[[int, int | None], None]]:
    """A bar on stderr with an `update(done, total)` callback; `quiet` (`--json`) hides it."""
    bar = Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), console=console, disable=quiet
    )
    task = bar.add_task(label, total=None)

    def update(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    return bar, update
