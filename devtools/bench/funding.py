"""Funding: every phase's users get their grants before any clock starts, in set-based SQL.

Funding writes what GrantCredits would. Its events stay in the outbox, to be marked
sent before the end-to-end phases, so the relay starts without a backlog.
"""

import json
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from devtools.bench.console import console
from devtools.bench.ledger_rows import OutboxRows, Postings, balance_body, batch_item, transaction_body
from devtools.bench.sql import (
    ENSURE_ACCOUNTS,
    INSERT_ALLOCATIONS,
    INSERT_BATCHES,
    INSERT_PROCESSED,
    INSERT_TXS,
    LOCK_ACCOUNTS,
    SYSTEM_ACCOUNT,
    adjust_balances,
    connect,
)
from devtools.bench.workload import Grant
from services.settings import Settings

FUNDING_CHUNK_USERS = 1000  # users per funding transaction (three grant rounds each)


async def fund_round(
    conn: asyncpg.Connection, grants: list[Grant], accounts: dict[str, int], adjustments: int, topic: str
) -> None:
    """One grant per user, set-based: for each, the rows `grant_credits` writes, no more.

    An ADJUSTMENT transaction, a PROMOTIONAL batch and its +allocation, the account's
    new balance, two balanced postings (the user leg with balances after), the
    processed command with the handler's result, and the `credits.granted` and
    `balance.changed` outbox events. `reconcile` at the end of the run checks it all.
    """
    tx_ids = [uuid.uuid4() for _ in grants]
    batch_ids = [uuid.uuid4() for _ in grants]
    account_ids = [accounts[g.user_id] for g in grants]
    credits = [g.credits for g in grants]
    users = [g.user_id for g in grants]
    await conn.execute(
        INSERT_TXS,
        tx_ids,
        users,
        credits,
        [g.command_id for g in grants],
        [g.reason for g in grants],
        [json.dumps({"reason": g.reason}) for g in grants],
        "ADJUSTMENT",
    )
    await conn.execute(
        INSERT_BATCHES,
        batch_ids,
        account_ids,
        users,
        credits,
        [g.expires_at for g in grants],
        tx_ids,
        [str(g.command_id) for g in grants],
    )
    await conn.execute(INSERT_ALLOCATIONS, tx_ids, batch_ids, credits)
    after = await adjust_balances(conn, account_ids, credits)
    postings = Postings()
    outbox = OutboxRows()
    results: list[str] = []
    now = datetime.now(UTC).isoformat()
    for tx_id, batch_id, account_id, grant in zip(tx_ids, batch_ids, account_ids, grants, strict=True):
        balance = balance_body(after[account_id])
        postings.add(tx_id, account_id, adjustments, grant.credits, after[account_id])
        results.append(
            json.dumps(
                {
                    "transactionId": str(tx_id),
                    "batchId": str(batch_id),
                    "credits": grant.credits,
                    "expiresAt": grant.expires_at.isoformat(),
                    "balance": balance,
                }
            )
        )
        batches = [batch_item(batch_id, grant.credits, "PROMOTIONAL", grant.expires_at)]
        granted = transaction_body(
            tx_id, "ADJUSTMENT", grant.credits, grant.reason, batches, {"reason": grant.reason}
        )
        outbox.add_transaction(
            grant.command_id, grant.user_id, "credits.granted", granted, balance, grant.credits, now
        )
    await postings.insert(conn)
    await conn.execute(INSERT_PROCESSED, [g.command_id for g in grants], users, results, "credits.grant")
    await outbox.insert(conn, topic)


async def fund(settings: Settings, phases: dict[str, list[list[Grant]]]) -> None:
    """Fund every phase's users before any clock starts, with set-based SQL.

    Why not `apply_commands` with GrantCredits commands: a grant takes the per-command
    path (a savepoint and ~9 statements) and runs at 130-270 grants/s here, i.e. 2-4
    minutes for the ~36k grants of a default run. These statements write exactly the
    rows a grant writes, a thousand users at a time, in seconds; reconcile proves it.
    """
    async with connect(settings) as conn:
        adjustments = await conn.fetchval(SYSTEM_ACCOUNT, "adjustments")
        for phase, rounds in phases.items():
            started = time.perf_counter()
            users = sorted({g.user_id for g in rounds[0]})
            for first in range(0, len(users), FUNDING_CHUNK_USERS):
                chunk = users[first : first + FUNDING_CHUNK_USERS]
                members = set(chunk)
                async with conn.transaction():
                    await conn.execute(ENSURE_ACCOUNTS, chunk)
                    accounts = {r["user_id"]: r["id"] for r in await conn.fetch(LOCK_ACCOUNTS, chunk)}
                    for round_ in rounds:
                        grants = [g for g in round_ if g.user_id in members]
                        await fund_round(conn, grants, accounts, adjustments, settings.events_topic)
            count = sum(len(r) for r in rounds)
            console.print(
                f"  phase {phase}: {len(users)} users, {count} grants in "
                f"{time.perf_counter() - started:.1f}s"
            )
        await conn.execute("ANALYZE")
