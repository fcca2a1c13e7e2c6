"""The result table on stdout: one row per scenario (tests/test_zz_faults.py parses it)."""

from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.table import Table


@dataclass
class Result:
    """One row of the table."""

    key: str
    name: str
    faults: str = ""
    sent: int = 0
    messages: int = 0
    applied: int = 0
    rejected: int = 0
    duplicates: int = 0
    events_unique: int = 0
    events_raw: int = 0
    seconds: float = 0.0
    skipped: str | None = None
    discrepancies: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def verdict(self, text: str) -> str:
        """`text` in green if this scenario found no discrepancy, else in red."""
        colour = "green" if not self.discrepancies else "red"
        return f"[{colour}]{text}[/{colour}]"


def render(results: list[Result], console: Console) -> int:
    """The table of the issue; returns the number of discrepancies."""
    table = Table(title="fault suite", box=box.SQUARE)
    table.add_column("scenario", no_wrap=True)
    table.add_column("faults injected")
    for header in ("sent", "applied", "rejected", "duplicates ignored",
                   "events published (unique / raw)", "time (s)", "discrepancies"):
        table.add_column(header, justify="right", no_wrap=True)
    total = 0
    for r in results:
        total += len(r.discrepancies)
        if r.skipped:
            table.add_row(r.name, r.faults, "-", "-", "-", "-", "-", "-", "skipped")
            continue
        sent = f"{r.sent}" if r.messages == r.sent else f"{r.sent} ({r.messages} msgs)"
        table.add_row(r.name, r.faults, sent, str(r.applied), str(r.rejected), str(r.duplicates),
                      f"{r.events_unique} / {r.events_raw}", f"{r.seconds:.0f}",
                      r.verdict(str(len(r.discrepancies))))
    console.print(table)
    for r in results:
        for note in r.notes:
            console.print(f"  {r.key}: {note}")
        for discrepancy in r.discrepancies[:30]:
            console.print(f"  [red]{r.key}: DISCREPANCY {discrepancy}[/red]")
        if len(r.discrepancies) > 30:
            console.print(f"  [red]{r.key}: ... {len(r.discrepancies) - 30} more[/red]")
    return total
