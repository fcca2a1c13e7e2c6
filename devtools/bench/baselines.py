"""Baselines (a) and (b): the same charges written by plain asyncpg, with no Kafka at all.

(a) is the obvious design, one database transaction per charge, which the end-to-end
path must at least match; its statements are its own and stay as they are. (b) is 100
charges per transaction in set-based SQL (the worker's statements, from the ledger's
stores), the ceiling of what Postgres can do here. Both write every row the worker
writes for a charge, with the results and events the ledger's own code builds, so
only round trips and transactions differ.
"""

import asyncio
import uuid
from collections.abc import Sequence

import asyncpg

from devtools.bench.ledger_rows import claim, insert_transactions, record, write
from devtools.bench.sql import connect, fetch, system_accounts
from devtools.bench.timing import timed
from devtools.bench.workload import Charge
from services.ledger import batch_store
from services.ledger.account_store import LOCK_ACCOUNTS
from services.ledger.apply import outbox_of
from services.ledger.handlers.charges import charged
from services.ledger.journal_store import as_json
from services.ledger.models import AVAILABLE, Allocation, Leg, TransactionDraft
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
        tx_id = uuid.uuid4()
        ids: list[uuid.UUID] = []
        amounts: list[int] = []
        taken: list[Allocation] = []
        left = charge.credits
        for batch in batches:
            n = min(left, batch["remaining"])
            ids.append(batch["id"])
            amounts.append(n)
            taken.append(Allocation(tx_id, batch["id"], -n, batch["expires_at"], batch["source"]))
            left -= n
            if left == 0:
                break
        if left:
            raise RuntimeError(f"baseline (a): batches of {charge.user_id} disagree with the balance")
        await conn.execute(TAKE_FROM_BATCHES, ids, amounts)
        await conn.execute(INSERT_ONE_TX, tx_id, charge.user_id, charge.credits, charge.id, charge.reference)
        await conn.execute(INSERT_DEBIT_ALLOCATIONS, tx_id, ids, amounts)
        after = await conn.fetchrow(DEBIT_ACCOUNT, account["id"], charge.credits)
        assert after is not None
        balances = (after["available"], after["held"])
        await conn.execute(
            INSERT_TWO_POSTINGS, tx_id, account["id"], charge.credits, balances[0], balances[1], bookings
        )
        draft = TransactionDraft(
            type="CREDIT_USAGE", user_id=charge.user_id, credits=charge.credits, command_id=charge.id,
            reference=charge.reference, id=tx_id,
        )
        outcome = charged(charge.command(), draft, balances, taken)
        await conn.execute(INSERT_ONE_PROCESSED, charge.id, charge.user_id, as_json(outcome.result))
        fact, changed = outbox_of([outcome], topic)
        await conn.execute(
            INSERT_TWO_OUTBOX, fact[0], changed[0], charge.id, topic, charge.user_id, fact[5], changed[5]
        )


async def baseline_single(settings: Settings, charges: list[Charge]) -> tuple[float, str]:
    """(a): charges/s with one transaction per charge on BASELINE_CONNECTIONS connections."""
    conns = [await asyncpg.connect(settings.plain_database_url) for _ in range(BASELINE_CONNECTIONS)]
    try:
        bookings = (await system_accounts(conns[0]))["bookings"]
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
        commands = [c.command() for c in chunk]
        claimed = await claim(conn, commands)
        commands = [c for c in commands if c.id in claimed]
        if not commands:
            return
        locked = await fetch(conn, LOCK_ACCOUNTS, {"users": [c.user_id for c in commands]})
        accounts = {r["user_id"]: r for r in locked}
        for command in commands:
            if accounts[command.user_id]["available"] < command.payload.credits:
                raise RuntimeError(f"baseline (b): {command.user_id} cannot pay {command.payload.credits}")
        drafts = [
            TransactionDraft(
                type="CREDIT_USAGE",
                user_id=c.user_id,
                credits=c.payload.credits,
                command_id=c.id,
                reference=c.payload.reference,
                metadata=c.payload.metadata,
                legs=[
                    Leg(accounts[c.user_id]["id"], AVAILABLE, -c.payload.credits),
                    Leg(bookings, AVAILABLE, c.payload.credits),
                ],
            )
            for c in commands
        ]
        await insert_transactions(conn, drafts)
        takes = [(d.id, accounts[d.user_id]["id"], d.credits) for d in drafts]
        taken: dict[uuid.UUID, list[Allocation]] = {}
        for row in await fetch(conn, batch_store.TAKE_FROM_BATCHES, batch_store.take_rows(takes)):
            taken.setdefault(row["tx_id"], []).append(
                Allocation(row["tx_id"], row["id"], -row["n"], row["expires_at"], row["source"])
            )
        batch_store.check_taken(takes, [a for allocations in taken.values() for a in allocations])
        after = await write(conn, drafts, {account: (-credits, 0) for _, account, credits in takes})
        outcomes = [
            charged(command, draft, after[account], taken[draft.id])
            for command, draft, (_, account, _) in zip(commands, drafts, takes, strict=True)
        ]
        await record(conn, outcomes, topic)


async def baseline_set(settings: Settings, charges: list[Charge]) -> tuple[float, str]:
    """(b): charges/s with SET_CHUNK charges per transaction, raw asyncpg, one connection."""
    async with connect(settings) as conn:
        bookings = (await system_accounts(conn))["bookings"]
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
