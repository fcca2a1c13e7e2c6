"""Set-based ledger statements in asyncpg form, and a connection to the bench database.

They are the write statements of services/ledger/repository.py with `$n` parameters,
shared by the funding and by baseline (b). Columns a charge or grant leaves NULL there
are left to their defaults here.
"""

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from services.settings import Settings


@contextlib.asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """One asyncpg connection to the bench database, closed on the way out."""
    conn = await asyncpg.connect(settings.plain_database_url)
    try:
        yield conn
    finally:
        await conn.close()


ENSURE_ACCOUNTS = (
    "INSERT INTO accounts (user_id) SELECT unnest($1::text[]) ON CONFLICT (user_id) DO NOTHING"
)
LOCK_ACCOUNTS = """
    SELECT id, user_id, available, held FROM accounts
     WHERE user_id = ANY($1::text[]) ORDER BY id FOR UPDATE
"""
SYSTEM_ACCOUNT = "SELECT id FROM accounts WHERE system_code = $1"
DONE_IDS = "SELECT command_id FROM processed_commands WHERE command_id = ANY($1::uuid[])"
INSERT_TXS = """
    INSERT INTO ledger_transactions (id, type, user_id, credits, command_id, reference, metadata)
    SELECT t.id, $7, t.user_id, t.credits, t.command_id, t.reference, t.metadata
      FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::jsonb[])
           AS t(id, user_id, credits, command_id, reference, metadata)
"""
INSERT_BATCHES = """
    INSERT INTO credit_batches (id, account_id, user_id, source, amount, remaining, expires_at,
                                transaction_id, source_ref)
    SELECT b.id, b.account_id, b.user_id, 'PROMOTIONAL', b.n, b.n, b.expires_at, b.tx, b.ref
      FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::timestamptz[],
                  $6::uuid[], $7::text[]) AS b(id, account_id, user_id, n, expires_at, tx, ref)
"""
INSERT_ALLOCATIONS = """
    INSERT INTO batch_allocations (transaction_id, batch_id, amount)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[])
"""
TAKE_SET = """
    WITH req AS (
        SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS r(tx_id, account_id, credits)
    ), cand AS (
        SELECT b.id, b.expires_at, b.source, b.remaining, r.tx_id, r.credits,
               (sum(b.remaining) OVER (
                   PARTITION BY b.account_id
                   ORDER BY b.expires_at, b.acquired_at, b.id))::bigint AS upto
          FROM req r
          JOIN credit_batches b
            ON b.account_id = r.account_id AND b.status = 'open' AND b.remaining > 0
    ), take AS (
        SELECT id, expires_at, source, tx_id,
               LEAST(remaining, credits - (upto - remaining)) AS n
          FROM cand WHERE upto - remaining < credits
    ), upd AS (
        UPDATE credit_batches b SET remaining = b.remaining - t.n
          FROM take t WHERE b.id = t.id
    ), ins AS (
        INSERT INTO batch_allocations (transaction_id, batch_id, amount)
        SELECT tx_id, id, -n FROM take
    )
    SELECT tx_id, id, n, expires_at, source FROM take ORDER BY tx_id, expires_at
"""
ADJUST_SET = """
    UPDATE accounts a SET available = a.available + d.avail
      FROM unnest($1::bigint[], $2::bigint[]) AS d(id, avail)
     WHERE a.id = d.id
 RETURNING a.id, a.available, a.held
"""
INSERT_POSTINGS = """
    INSERT INTO postings (transaction_id, account_id, bucket, amount, available_after, held_after)
    SELECT t, a, 'available', n, av, h
      FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
           AS p(t, a, n, av, h)
"""
INSERT_PROCESSED = """
    INSERT INTO processed_commands (command_id, type, user_id, status, result)
    SELECT id, $4, u, 'applied', r FROM unnest($1::uuid[], $2::text[], $3::jsonb[]) AS p(id, u, r)
"""
INSERT_OUTBOX = """
    INSERT INTO outbox (event_id, command_id, topic, key, event_type, payload)
    SELECT e, c, $3, k, t, p
      FROM unnest($1::uuid[], $2::uuid[], $4::text[], $5::text[], $6::jsonb[])
           WITH ORDINALITY AS o(e, c, k, t, p, n)
     ORDER BY n
"""


async def adjust_balances(
    conn: asyncpg.Connection, account_ids: list[int], deltas: list[int]
) -> dict[int, tuple[int, int]]:
    """Add each delta to its account's available credits: (available, held) after, by account."""
    return {r["id"]: (r["available"], r["held"]) for r in await conn.fetch(ADJUST_SET, account_ids, deltas)}
