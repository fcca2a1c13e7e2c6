"""Baselines (a) and (b): the same charges written by plain asyncpg, with no Kafka at all.

(a) is the obvious design, one database transaction per charge, which the end-to-end
path must at least match; (b) is 100 charges per transaction in set-based SQL (the
worker's statements), the ceiling of what Postgres can do here. Both write every row
the worker writes for a charge, so only round trips and transactions differ.
"""

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from devtools.bench.ledger_rows import OutboxRows, Postings, batch_item, charge_outcome
from devtools.bench.sql import (
    DONE_IDS,
    INSERT_PROCESSED,
    INSERT_TXS,
    LOCK_ACCOUNTS,
    SYSTEM_ACCOUNT,
    TAKE_SET,
    adjust_balances,
    connect,
)
from devtools.bench.timing import timed
from devtools.bench.workload import Charge
from services.settings import Settings

BASELINE_CONNECTIONS = 8  # (a): as the issue fixes it; 8 measured best on 2 cores
SET_CHUNK = 100  # (b): charges per transaction


# --------------------------------------------------------------------------- baseline (a)

# One charge, one statement per step, literal VALUES where a row is fixed.
LOCK_ACCOUNT = "SELECT id, available, held FROM accounts WHERE user_id = $1 FOR UPDATE"
LOCK_BATCHES = """
    SELECT id, remaining, expires_at, source FROM credit_batches
     WHERE account_id = $1 AND status = 'open' AND remaining > 0
     ORDER BY expires_at, acquired_at, id FOR UPDATE
"""
TAKE_FROM_BATCHES = """
    UPDATE credit_batches b SET remaining = b.remaining - t.n
      FROM unnest($1::uuid[], $2::bigint[]) AS t(id, n) WHERE b.id = t.id
"""
INSERT_ONE_TX = """
    INSERT INTO ledger_transactions (id, type, user_id, credits, command_id, reference, metadata)
    VALUES ($1, 'CREDIT_USAGE', $2, $3, $4, $5, '{}'::jsonb)
"""
INSERT_DEBIT_ALLOCATIONS = """
    INSERT INTO batch_allocations (transaction_id, batch_id, amount)
    SELECT $1, t.id, -t.n FROM unnest($2::uuid[], $3::bigint[]) AS t(id, n)
"""
DEBIT_ACCOUNT = "UPDATE accounts SET available = available - $2 WHERE id = $1 RETURNING available, held"
INSERT_TWO_POSTINGS = """
    INSERT INTO postings (transaction_id, account_id, bucket, amount, available_after, held_after)
    VALUES ($1, $2, 'available', -$3::bigint, $4, $5), ($1, $6, 'available', $3::bigint, NULL, NULL)
"""
INSERT_ONE_PROCESSED = """
    INSERT INTO processed_commands (command_id, type, user_id, status, result)
    VALUES ($1, 'credits.charge', $2, 'applied', $3::jsonb)
"""
INSERT_TWO_OUTBOX = """
    INSERT INTO outbox (event_id, command_id, topic, key, event_type, payload)
    VALUES ($1, $3, $4, $5, 'credits.charged', $6::jsonb),
           ($2, $3, $4, $5, 'balance.changed', $7::jsonb)
"""


async def charge_one(conn: asyncpg.Connection, charge: Charge, bookings: int, topic: str) -> None:
    """One charge, one transaction, one statement per step: the conventional design.

    It writes everything the worker writes for a charge (transaction, batch updates
    and allocations, balanced postings with balances after, processed command, both
    outbox events), so the database does the same work; only the number of round
    trips and of transactions differs.
    """
    async with conn.transaction():
        account = await conn.fetchrow(LOCK_ACCOUNT, charge.user_id)
        if account is None or account["available"] < charge.credits:
            raise RuntimeError(f"baseline (a): {charge.user_id} cannot pay {charge.credits}")
        batches = await conn.fetch(LOCK_BATCHES, account["id"])
        ids: list[uuid.UUID] = []
        amounts: list[int] = []
        taken: list[dict[str, Any]] = []
        left = charge.credits
        for batch in batches:
            n = min(left, batch["remaining"])
            ids.append(batch["id"])
            amounts.append(n)
            taken.append(batch_item(batch["id"], n, batch["source"], batch["expires_at"]))
            left -= n
            if left == 0:
                break
        if left:
            raise RuntimeError(f"baseline (a): batches of {charge.user_id} disagree with the balance")
        tx_id = uuid.uuid4()
        await conn.execute(TAKE_FROM_BATCHES, ids, amounts)
        await conn.execute(INSERT_ONE_TX, tx_id, charge.user_id, charge.credits, charge.id, charge.reference)
        await conn.execute(INSERT_DEBIT_ALLOCATIONS, tx_id, ids, amounts)
        after = await conn.fetchrow(DEBIT_ACCOUNT, account["id"], charge.credits)
        assert after is not None
        balances = (after["available"], after["held"])
        await conn.execute(
            INSERT_TWO_POSTINGS, tx_id, account["id"], charge.credits, balances[0], balances[1], bookings
        )
        outbox = OutboxRows()
        result = charge_outcome(charge, tx_id, taken, balances, outbox, datetime.now(UTC).isoformat())
        await conn.execute(INSERT_ONE_PROCESSED, charge.id, charge.user_id, result)
        await conn.execute(
            INSERT_TWO_OUTBOX,
            outbox.event_ids[0],
            outbox.event_ids[1],
            charge.id,
            topic,
            charge.user_id,
            outbox.payloads[0],
            outbox.payloads[1],
        )


async def baseline_single(settings: Settings, charges: list[Charge]) -> tuple[float, str]:
    """(a): charges/s with one transaction per charge on BASELINE_CONNECTIONS connections."""
    conns = [await asyncpg.connect(settings.plain_database_url) for _ in range(BASELINE_CONNECTIONS)]
    try:
        bookings = await conns[0].fetchval(SYSTEM_ACCOUNT, "bookings")
        pending = iter(charges)
        done = 0

        async def drain(conn: asyncpg.Connection) -> None:
            nonlocal done
            for charge in pending:  # one shared iterator: each connection takes the next charge
                await charge_one(conn, charge, bookings, settings.events_topic)
                done += 1

        return await timed(
            f"baseline (a) one tx per charge, asyncpg x{BASELINE_CONNECTIONS}",
            settings,
            len(charges),
            lambda: done,
            asyncio.gather(*(drain(c) for c in conns)),
        )
    finally:
        for conn in conns:
            await conn.close()



# --------------------------------------------------------------------------- baseline (b)


def distinct_user_chunks(charges: Sequence[Charge], size: int) -> list[list[Charge]]:
    """Consecutive chunks of at most `size`, each user at most once, order kept."""
    chunks: list[list[Charge]] = []
    current: list[Charge] = []
    users: set[str] = set()
    for charge in charges:
        if len(current) == size or charge.user_id in users:
            chunks.append(current)
            current, users = [], set()
        current.append(charge)
        users.add(charge.user_id)
    if current:
        chunks.append(current)
    return chunks


async def charge_set(conn: asyncpg.Connection, chunk: list[Charge], bookings: int, topic: str) -> None:
    """Distinct users' charges with a fixed number of statements, as the worker's SQL does."""
    async with conn.transaction():
        done = {row[0] for row in await conn.fetch(DONE_IDS, [c.id for c in chunk])}
        chunk = [c for c in chunk if c.id not in done]
        if not chunk:
            return
        accounts = {r["user_id"]: r for r in await conn.fetch(LOCK_ACCOUNTS, [c.user_id for c in chunk])}
        for charge in chunk:
            if accounts[charge.user_id]["available"] < charge.credits:
                raise RuntimeError(f"baseline (b): {charge.user_id} cannot pay {charge.credits}")
        tx_ids = [uuid.uuid4() for _ in chunk]
        account_ids = [accounts[c.user_id]["id"] for c in chunk]
        credits = [c.credits for c in chunk]
        await conn.execute(
            INSERT_TXS,
            tx_ids,
            [c.user_id for c in chunk],
            credits,
            [c.id for c in chunk],
            [c.reference for c in chunk],
            ["{}"] * len(chunk),
            "CREDIT_USAGE",
        )
        taken: dict[uuid.UUID, list[dict[str, Any]]] = {}
        sums: dict[uuid.UUID, int] = {}
        for row in await conn.fetch(TAKE_SET, tx_ids, account_ids, credits):
            taken.setdefault(row["tx_id"], []).append(
                batch_item(row["id"], row["n"], row["source"], row["expires_at"])
            )
            sums[row["tx_id"]] = sums.get(row["tx_id"], 0) + row["n"]
        if any(sums.get(t, 0) != n for t, n in zip(tx_ids, credits, strict=True)):
            raise RuntimeError("baseline (b): batches disagree with balances")
        after = await adjust_balances(conn, account_ids, [-n for n in credits])
        postings = Postings()
        outbox = OutboxRows()
        results: list[str] = []
        now = datetime.now(UTC).isoformat()
        for tx_id, account_id, charge in zip(tx_ids, account_ids, chunk, strict=True):
            postings.add(tx_id, account_id, bookings, -charge.credits, after[account_id])
            results.append(charge_outcome(charge, tx_id, taken[tx_id], after[account_id], outbox, now))
        await postings.insert(conn)
        await conn.execute(
            INSERT_PROCESSED, [c.id for c in chunk], [c.user_id for c in chunk], results, "credits.charge"
        )
        await outbox.insert(conn, topic)


async def baseline_set(settings: Settings, charges: list[Charge]) -> tuple[float, str]:
    """(b): charges/s with SET_CHUNK charges per transaction, raw asyncpg, one connection."""
    async with connect(settings) as conn:
        bookings = await conn.fetchval(SYSTEM_ACCOUNT, "bookings")
        done = 0

        async def drain() -> None:
            nonlocal done
            for chunk in distinct_user_chunks(charges, SET_CHUNK):
                await charge_set(conn, chunk, bookings, settings.events_topic)
                done += len(chunk)

        return await timed(
            f"baseline (b) set-based SQL, {SET_CHUNK}/tx, asyncpg x1", settings, len(charges), lambda: done,
            drain(),
        )
