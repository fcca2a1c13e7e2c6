"""Baseline (d), the bare ceiling: the least a correct charge can cost on this machine.

A charge must lock the user's open batches earliest expiry first, take its credits
from them, and leave one ledger row carrying its command id (unique, so a replay is
refused). (d) does exactly that, set-based, SET_CHUNK charges per transaction in ONE
statement, on BARE_CONNECTIONS connections, on tables of its own (`bare_batches`,
`bare_ledger`) created in the run's database. Its SQL is fixed here and never follows
the product's schema: it measures the machine (Postgres and the cores it gets), not
our design, so `e2e / (d)` says how much of the machine's ceiling the product reaches
and stays comparable across changes of the schema.

It is not a ledger (no double entry, no balances, no events): that is the point. A
check after the phase makes sure it was still correct: every user's batches lost
exactly what its ledger rows charged.
"""

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg

from devtools.bench.baselines import SET_CHUNK, distinct_user_chunks
from devtools.bench.sql import connect
from devtools.bench.timing import timed
from devtools.bench.workload import Charge
from services.settings import Settings

BARE_CONNECTIONS = 2

CREATE_TABLES = """
    CREATE TABLE bare_batches (
        id bigserial PRIMARY KEY,
        user_id text NOT NULL,
        amount bigint NOT NULL,
        remaining bigint NOT NULL CHECK (remaining >= 0),
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX bare_batches_spend ON bare_batches (user_id, expires_at, id) WHERE remaining > 0;
    CREATE TABLE bare_ledger (
        id bigserial PRIMARY KEY,
        command_id uuid NOT NULL UNIQUE,
        user_id text NOT NULL,
        credits bigint NOT NULL CHECK (credits > 0)
    );
"""
FUND = """
    INSERT INTO bare_batches (user_id, amount, remaining, expires_at)
    SELECT u, n, n, e FROM unnest($1::text[], $2::bigint[], $3::timestamptz[]) AS f(u, n, e)
"""
# One statement per chunk of distinct users: lock their open batches in spend order,
# take each charge's credits from the earliest-expiring ones, insert the ledger rows.
CHARGE_CHUNK = """
    WITH c AS (
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS c(command_id, user_id, credits)
    ), locked AS (
        SELECT b.id, b.user_id, b.remaining, b.expires_at FROM bare_batches b
          JOIN c USING (user_id)
         WHERE b.remaining > 0
         ORDER BY b.user_id, b.expires_at, b.id
           FOR UPDATE OF b
    ), take AS (
        SELECT l.id, least(l.remaining,
                           greatest(0, c.credits - (sum(l.remaining) OVER w - l.remaining))) AS n
          FROM locked l JOIN c USING (user_id)
        WINDOW w AS (PARTITION BY l.user_id ORDER BY l.expires_at, l.id)
    ), spent AS (
        UPDATE bare_batches b SET remaining = b.remaining - t.n
          FROM take t WHERE b.id = t.id AND t.n > 0
        RETURNING b.user_id, t.n
    ), paid AS (
        SELECT user_id, sum(n) AS n FROM spent GROUP BY user_id
    )
    INSERT INTO bare_ledger (command_id, user_id, credits)
    SELECT c.command_id, c.user_id, c.credits FROM c JOIN paid USING (user_id)
     WHERE paid.n = c.credits
"""
# After the phase: users whose batches lost more or less than their ledger rows charged.
MISMATCHES = """
    SELECT count(*) FROM (
        SELECT b.user_id, sum(b.amount - b.remaining) AS spent FROM bare_batches b GROUP BY b.user_id
    ) s FULL JOIN (
        SELECT user_id, sum(credits) AS charged FROM bare_ledger GROUP BY user_id
    ) l USING (user_id)
     WHERE coalesce(s.spent, 0) <> coalesce(l.charged, 0)
"""


async def fund_bare(conn: asyncpg.Connection, charges: Sequence[Charge], now: datetime) -> None:
    """Three batches per user (365, 30 and 90 days), enough for every charge, as the
    ledger phases are funded: charges cross batch boundaries in expiry order."""
    need: dict[str, int] = {}
    for charge in charges:
        need[charge.user_id] = need.get(charge.user_id, 0) + charge.credits
    users: list[str] = []
    amounts: list[int] = []
    expiries: list[datetime] = []
    for user, total in need.items():
        short = max(1, total * 3 // 10)
        long = max(1, total - 2 * short) + 5
        for credits, days in ((long, 365), (short, 30), (short, 90)):
            users.append(user)
            amounts.append(credits)
            expiries.append(now + timedelta(days=days))
    await conn.execute(CREATE_TABLES)
    await conn.execute(FUND, users, amounts, expiries)
    await conn.execute("VACUUM ANALYZE bare_batches")


async def baseline_bare(settings: Settings, charges: list[Charge], now: datetime) -> tuple[float, str]:
    """(d): charges/s of the bare correct charge, SET_CHUNK per statement, BARE_CONNECTIONS."""
    async with connect(settings) as conn:
        await fund_bare(conn, charges, now)
    conns = [await asyncpg.connect(settings.plain_database_url) for _ in range(BARE_CONNECTIONS)]
    try:
        chunks = iter(distinct_user_chunks(charges, SET_CHUNK))
        done = 0

        async def drain(conn: asyncpg.Connection) -> None:
            nonlocal done
            for chunk in chunks:  # one shared iterator: each connection takes the next chunk
                status = await conn.execute(
                    CHARGE_CHUNK, [c.id for c in chunk], [c.user_id for c in chunk],
                    [c.credits for c in chunk],
                )
                if int(status.split()[-1]) != len(chunk):
                    raise RuntimeError(f"baseline (d): {status} for a chunk of {len(chunk)}")
                done += len(chunk)

        rate, cpu = await timed(
            f"baseline (d) bare ceiling, {SET_CHUNK}/statement, asyncpg x{BARE_CONNECTIONS}",
            settings, len(charges), lambda: done, asyncio.gather(*(drain(c) for c in conns)),
        )
        wrong = await conns[0].fetchval(MISMATCHES)
        if wrong:
            raise RuntimeError(f"baseline (d): {wrong} users' batches disagree with their ledger rows")
        return rate, cpu
    finally:
        for conn in conns:
            await conn.close()
