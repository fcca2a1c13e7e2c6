"""Progress lines go to stderr: stdout carries only the result table, which tests parse."""

import time

from rich.console import Console

progress = Console(stderr=True, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    progress.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")
