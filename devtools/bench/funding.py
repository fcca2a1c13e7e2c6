"""Funding: every phase's users get their grants before any clock starts, in set-based SQL.

Funding writes what GrantCredits would. Its events stay in the outbox, to be marked
sent before the end-to-end phases, so the relay starts without a backlog.
"""

import time
import uuid

import asyncpg

from devtools.bench.console import console
from devtools.bench.ledger_rows import claim, insert_transactions, record, write
from devtools.bench.sql import INSERT_BATCHES, connect, execute, fetch, system_accounts
from devtools.bench.workload import Grant
from services.ledger.account_store import ENSURE_ACCOUNTS, LOCK_ACCOUNTS
from services.ledger.batch_store import INSERT_ALLOCATIONS, allocation_rows
from services.ledger.handlers.grants import granted
from services.ledger.models import AVAILABLE, PROMOTIONAL, Allocation, Leg, TransactionDraft
from services.settings import Settings

FUNDING_CHUNK_USERS = 1000  # users per funding transaction (three grant rounds each)


async def fund_round(
    conn: asyncpg.Connection, grants: list[Grant], accounts: dict[str, int], adjustments: int, topic: str
) -> None:
    """One grant per user, set-based: for each, the rows `grant_credits` writes, no more.

    The claimed command, an ADJUSTMENT transaction, a PROMOTIONAL batch and its
    +allocation, the account's new balance, two balanced postings (the user leg with
    balances after), the handler's result and its `credits.granted` and
    `balance.changed` outbox events. `reconcile` at the end of the run checks it all.
    """
    commands = [g.command() for g in grants]
    await claim(conn, commands)
    drafts = [
        TransactionDraft(
            type="ADJUSTMENT",
            user_id=g.user_id,
            credits=g.credits,
            command_id=g.command_id,
            reference=g.reason,
            metadata={"reason": g.reason},
            legs=[Leg(accounts[g.user_id], AVAILABLE, g.credits), Leg(adjustments, AVAILABLE, -g.credits)],
        )
        for g in grants
    ]
    batches = [
        Allocation(d.id, uuid.uuid4(), g.credits, g.expires_at, PROMOTIONAL)
        for d, g in zip(drafts, grants, strict=True)
    ]
    await insert_transactions(conn, drafts)
    await conn.execute(
        INSERT_BATCHES,
        [b.batch_id for b in batches],
        [accounts[g.user_id] for g in grants],
        [g.user_id for g in grants],
        [g.credits for g in grants],
        [g.expires_at for g in grants],
        [d.id for d in drafts],
        [str(g.command_id) for g in grants],
    )
    await execute(conn, INSERT_ALLOCATIONS, allocation_rows(batches))
    after = await write(conn, drafts, {accounts[g.user_id]: (g.credits, 0) for g in grants})
    outcomes = [
        granted(command, draft, batch, after[accounts[command.user_id]])
        for command, draft, batch in zip(commands, drafts, batches, strict=True)
    ]
    await record(conn, outcomes, topic)


async def fund(settings: Settings, phases: dict[str, list[list[Grant]]]) -> None:
    """Fund every phase's users before any clock starts, with set-based SQL.

    Why not `apply_commands` with GrantCredits commands: a grant takes the per-command
    path (a savepoint and ~9 statements) and runs at 130-270 grants/s here, i.e. 2-4
    minutes for the ~36k grants of a default run. These statements write exactly the
    rows a grant writes, a thousand users at a time, in seconds; reconcile proves it.
    """
    async with connect(settings) as conn:
        adjustments = (await system_accounts(conn))["adjustments"]
        for phase, rounds in phases.items():
            started = time.perf_counter()
            users = sorted({g.user_id for g in rounds[0]})
            for first in range(0, len(users), FUNDING_CHUNK_USERS):
                chunk = users[first : first + FUNDING_CHUNK_USERS]
                members = set(chunk)
                async with conn.transaction():
                    await execute(conn, ENSURE_ACCOUNTS, {"users": chunk})
                    locked = await fetch(conn, LOCK_ACCOUNTS, {"users": chunk})
                    accounts = {r["user_id"]: r["id"] for r in locked}
                    for round_ in rounds:
                        grants = [g for g in round_ if g.user_id in members]
                        await fund_round(conn, grants, accounts, adjustments, settings.events_topic)
            count = sum(len(r) for r in rounds)
            console.print(
                f"  phase {phase}: {len(users)} users, {count} grants in "
                f"{time.perf_counter() - started:.1f}s"
            )
        await conn.execute("ANALYZE")
