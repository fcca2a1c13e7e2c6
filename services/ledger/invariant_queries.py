"""The ledger's invariants, checked over every account (docs/architecture.md, "Reconcile").

For each user account:
- running `available` / `held` = sum of its postings in that bucket;
- `available` = sum of `remaining` over its open batches;
- `held` = sum of its open holds;
and globally: every transaction's postings sum to zero and it has postings; every
batch's `remaining` equals the sum of its allocations; every ledger transaction
belongs to an applied command; every processed command has its outbox events.
Accounts are checked in chunks so memory stays flat and progress can be shown.
"""

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

CHUNK = 2000


@dataclass(frozen=True)
class Discrepancy:
    check: str
    subject: str
    expected: str
    actual: str

    def __str__(self) -> str:
        return f"{self.check}: {self.subject}: expected {self.expected}, found {self.actual}"


ACCOUNT_CHECK = text(
    """
    WITH acc AS (
        SELECT id, user_id, available, held FROM accounts
         WHERE user_id IS NOT NULL AND id > :after ORDER BY id LIMIT :limit
    ), p AS (
        SELECT account_id,
               coalesce(sum(amount) FILTER (WHERE bucket = 'available'), 0) AS avail,
               coalesce(sum(amount) FILTER (WHERE bucket = 'held'), 0) AS held
          FROM postings WHERE account_id IN (SELECT id FROM acc) GROUP BY account_id
    ), b AS (
        SELECT account_id, sum(remaining) AS remaining FROM credit_batches
         WHERE account_id IN (SELECT id FROM acc) AND status = 'open' GROUP BY account_id
    ), h AS (
        SELECT account_id, sum(credits) AS held FROM holds
         WHERE account_id IN (SELECT id FROM acc) AND status = 'open' GROUP BY account_id
    )
    SELECT acc.id, acc.user_id, acc.available, acc.held,
           coalesce(p.avail, 0)::bigint AS posted_available,
           coalesce(p.held, 0)::bigint AS posted_held,
           coalesce(b.remaining, 0)::bigint AS batch_remaining,
           coalesce(h.held, 0)::bigint AS hold_credits
      FROM acc LEFT JOIN p ON p.account_id = acc.id LEFT JOIN b ON b.account_id = acc.id
      LEFT JOIN h ON h.account_id = acc.id ORDER BY acc.id
    """
)

GLOBAL_CHECKS: dict[str, str] = {
    "transaction postings sum to zero": """
        SELECT t.id::text, '0', coalesce(sum(p.amount), 0)::text
          FROM ledger_transactions t LEFT JOIN postings p ON p.transaction_id = t.id
         GROUP BY t.id HAVING coalesce(sum(p.amount), 0) <> 0 OR count(p.id) = 0
         LIMIT 100""",
    "batch remaining equals its allocations": """
        SELECT b.id::text, b.remaining::text, coalesce(sum(a.amount), 0)::text
          FROM credit_batches b LEFT JOIN batch_allocations a ON a.batch_id = b.id
         GROUP BY b.id HAVING b.remaining <> coalesce(sum(a.amount), 0)
         LIMIT 100""",
    "ledger transaction has an applied command": """
        SELECT t.id::text, 'applied', coalesce(pc.status, 'missing')
          FROM ledger_transactions t
          LEFT JOIN processed_commands pc ON pc.command_id = t.command_id
         WHERE pc.status IS DISTINCT FROM 'applied' LIMIT 100""",
    "all postings sum to zero": """
        SELECT 'ledger', '0', sum(amount)::text FROM postings HAVING sum(amount) <> 0""",
}

# Commands processed before the outbox's retention had their (sent) events pruned:
# only younger ones must still have them. The command and its outbox rows are written
# in one transaction, so `processed_at` equals the rows' `created_at`, and the prune
# deletes only rows sent before its cutoff: never one this check still looks for.
EVENTS_CHECK = "processed command has events"
COMMANDS_WITHOUT_EVENTS = text(
    """
    SELECT pc.command_id::text, '>= 1 outbox row', '0'
      FROM processed_commands pc
     WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.command_id = pc.command_id)
       AND NOT (pc.status = 'applied' AND (pc.result ? 'already' OR pc.result ? 'quiet'))
       AND NOT (pc.status = 'applied' AND pc.type = 'credits.expire'
                AND (pc.result ->> 'credits')::bigint = 0)
       AND (CAST(:kept_days AS int) IS NULL
            OR pc.processed_at >= now() - make_interval(days => CAST(:kept_days AS int)))
     LIMIT 100"""
)

UNSENT_EVENTS = text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")


async def reconcile(
    engine: AsyncEngine,
    *,
    progress: Callable[[int, int], None] | None = None,
    require_events_sent: bool = False,
    events_kept_days: int | None = None,
) -> list[Discrepancy]:
    """Return every discrepancy found (empty: the ledger is consistent).

    `events_kept_days`: OUTBOX_RETENTION_DAYS where `prune` runs; None checks the
    events of every processed command.
    """
    found: list[Discrepancy] = []
    async with engine.connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        total = int(
            await conn.scalar(text("SELECT count(*) FROM accounts WHERE user_id IS NOT NULL"))
            or 0
        )
        done, after = 0, 0
        while True:
            rows = (await conn.execute(ACCOUNT_CHECK, {"after": after, "limit": CHUNK})).all()
            if not rows:
                break
            for row in rows:
                who = f"user {row.user_id}"
                pairs = (
                    ("available equals its postings", row.available, row.posted_available),
                    ("held equals its postings", row.held, row.posted_held),
                    ("available equals open batches", row.available, row.batch_remaining),
                    ("held equals open holds", row.held, row.hold_credits),
                )
                for check, expected, actual in pairs:
                    if expected != actual:
                        found.append(Discrepancy(check, who, str(expected), str(actual)))
            after = rows[-1].id
            done += len(rows)
            if progress:
                progress(done, total)
        for check, sql in GLOBAL_CHECKS.items():
            for subject, expected, actual in (await conn.execute(text(sql))).all():
                found.append(Discrepancy(check, subject, expected, actual))
        silent = await conn.execute(COMMANDS_WITHOUT_EVENTS, {"kept_days": events_kept_days})
        for subject, expected, actual in silent.all():
            found.append(Discrepancy(EVENTS_CHECK, subject, expected, actual))
        if require_events_sent:
            unsent = int(await conn.scalar(UNSENT_EVENTS) or 0)
            if unsent:
                found.append(Discrepancy("events published", "outbox", "0 unsent", str(unsent)))
        await conn.rollback()
    return found
