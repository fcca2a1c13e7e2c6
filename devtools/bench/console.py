"""The bench's progress console: stderr, so that stdout carries only the result table."""

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)
