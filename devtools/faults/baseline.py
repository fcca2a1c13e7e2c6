"""What the processes report before a scenario, so its checks count only what it caused.

Worker counters, the DLQ and the child logs span the whole run; a scenario compares
them with the values it found when it started.
"""

from dataclasses import dataclass
from pathlib import Path

from devtools.faults.context import Context
from devtools.faults.polling import wait_for
from devtools.faults.report import Result

DUPLICATES = "payment_command_duplicates_total"
RETRIES = "payment_batch_retries_total"


@dataclass(frozen=True)
class Baseline:
    duplicates: float
    retries: float
    dead_letters: int
    log_marks: dict[Path, int]

    @classmethod
    async def take(cls, ctx: Context) -> "Baseline":
        await ctx.fleet.scrape()
        duplicates = ctx.fleet.worker_counter(DUPLICATES)
        retries = ctx.fleet.worker_counter(RETRIES)
        await ctx.dlq.catch_up()
        return cls(duplicates, retries, len(ctx.dlq.records), ctx.fleet.log_marks())

    async def check_since(self, ctx: Context, result: Result, twice: bool) -> None:
        """Duplicates ignored, dead letters, deaths, retries and log warnings since `take`."""

        async def duplicates_seen() -> bool:
            # Quiescence means every command applied once; a second copy sent last may
            # still be on its way to a worker, so (d) waits for the copies' count too.
            await ctx.fleet.scrape()
            result.duplicates = int(ctx.fleet.worker_counter(DUPLICATES) - self.duplicates)
            return not twice or result.duplicates >= result.messages - result.sent

        if not await wait_for(duplicates_seen, 30):
            result.discrepancies.append(
                f"duplicates ignored: expected >= {result.messages - result.sent} second copies, "
                f"the workers report {result.duplicates} within 30 s"
            )
        await ctx.dlq.catch_up()
        if dead := len(ctx.dlq.records) - self.dead_letters:
            result.discrepancies.append(f"dead letters: expected 0, found {dead} on the commands DLQ")
        result.discrepancies += ctx.fleet.check_exits()
        if retries := int(ctx.fleet.worker_counter(RETRIES) - self.retries):
            result.notes.append(f"worker batch retries after transient DB errors: {retries}")
        for line, n in ctx.fleet.log_summary(self.log_marks).most_common(8):
            result.notes.append(f"log {n}x {line}")
