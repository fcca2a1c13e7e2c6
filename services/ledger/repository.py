"""Every SQL statement of the ledger's write side.

Rules the statements rely on:
- A user's batches, holds and balance change only while their account row is locked
  (`lock_accounts`), and accounts are locked in id order, so two workers touching
  the same users cannot deadlock on each other's batches.
- Set-based statements take each account at most once (callers split repeats into
  rounds): `UPDATE ... FROM` applies one matching row per target.
- All postings of one transaction are inserted by one statement (the database checks
  per statement that they sum to zero).
"""

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger.models import Account, Allocation, Hold, TransactionDraft


@lru_cache(maxsize=256)
def sql(statement: str) -> TextClause:
    """`sql()` parses its SQL with a regex on every call; these statements are fixed."""
    return text(statement)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


_SYSTEM_ACCOUNTS: dict[str, dict[str, int]] = {}


async def system_accounts(conn: AsyncConnection) -> dict[str, int]:
    """Ids of the system accounts; created by the migration, so cached per database."""
    key = str(conn.engine.url)
    if key not in _SYSTEM_ACCOUNTS:
        rows = await conn.execute(
            sql("SELECT system_code, id FROM accounts WHERE system_code IS NOT NULL")
        )
        _SYSTEM_ACCOUNTS[key] = {code: account_id for code, account_id in rows.all()}
    return _SYSTEM_ACCOUNTS[key]


async def ensure_accounts(conn: AsyncConnection, user_ids: Iterable[str]) -> None:
    await conn.execute(
        sql(
            "INSERT INTO accounts (user_id) SELECT DISTINCT unnest(CAST(:users AS text[])) "
            "ON CONFLICT (user_id) DO NOTHING"
        ),
        {"users": sorted(set(user_ids))},
    )


async def lock_accounts(conn: AsyncConnection, user_ids: Iterable[str]) -> dict[str, Account]:
    rows = await conn.execute(
        sql(
            "SELECT id, user_id, available, held FROM accounts "
            "WHERE user_id = ANY(CAST(:users AS text[])) ORDER BY id FOR UPDATE"
        ),
        {"users": list(set(user_ids))},
    )
    return {row.user_id: Account(row.id, row.user_id, row.available, row.held) for row in rows}


COUNTED_DAILY = ("CREDIT_USAGE", "CREDIT_TRANSFER", "CREDIT_PURCHASE")


async def transactions_today(conn: AsyncConnection, user_ids: Iterable[str]) -> dict[str, int]:
    """Counted transactions (charges, captures, transfers sent, purchases) per user
    since midnight UTC: what MAX_DAILY_TRANSACTIONS limits."""
    rows = await conn.execute(
        sql(
            """
            SELECT user_id, count(*) FROM ledger_transactions
             WHERE user_id = ANY(CAST(:users AS text[]))
               AND type IN ('CREDIT_USAGE', 'CREDIT_TRANSFER', 'CREDIT_PURCHASE')
               AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
             GROUP BY user_id
            """
        ),
        {"users": list(set(user_ids))},
    )
    return {user: int(count) for user, count in rows.all()}


async def insert_transactions(conn: AsyncConnection, drafts: Sequence[TransactionDraft]) -> None:
    if not drafts:
        return
    await conn.execute(
        sql(
            """
            INSERT INTO ledger_transactions (
                id, type, user_id, counterparty_user_id, credits, amount_minor, currency,
                stripe_payment_intent_id, command_id, reference, related_transaction_id,
                hold_id, metadata)
            SELECT * FROM unnest(
                CAST(:id AS uuid[]), CAST(:type AS text[]), CAST(:user_id AS text[]),
                CAST(:counterparty AS text[]), CAST(:credits AS bigint[]),
                CAST(:amount AS bigint[]), CAST(:currency AS text[]), CAST(:pi AS text[]),
                CAST(:command_id AS uuid[]), CAST(:reference AS text[]),
                CAST(:related AS uuid[]), CAST(:hold_id AS uuid[]), CAST(:metadata AS jsonb[]))
            """
        ),
        {
            "id": [d.id for d in drafts],
            "type": [d.type for d in drafts],
            "user_id": [d.user_id for d in drafts],
            "counterparty": [d.counterparty_user_id for d in drafts],
            "credits": [d.credits for d in drafts],
            "amount": [d.amount_minor for d in drafts],
            "currency": [d.currency for d in drafts],
            "pi": [d.stripe_payment_intent_id for d in drafts],
            "command_id": [d.command_id for d in drafts],
            "reference": [d.reference for d in drafts],
            "related": [d.related_transaction_id for d in drafts],
            "hold_id": [d.hold_id for d in drafts],
            "metadata": [_json(d.metadata) for d in drafts],
        },
    )


async def insert_postings(
    conn: AsyncConnection,
    drafts: Sequence[TransactionDraft],
    balances_after: dict[int, tuple[int, int]],
) -> None:
    """Write the legs of `drafts`; user legs carry the account's balances after."""
    tx_ids: list[uuid.UUID] = []
    accounts: list[int] = []
    buckets: list[str] = []
    amounts: list[int] = []
    avail_after: list[int | None] = []
    held_after: list[int | None] = []
    for draft in drafts:
        if draft.unbalanced_by() != 0:
            raise ValueError(f"transaction {draft.id} is unbalanced by {draft.unbalanced_by()}")
        for leg in draft.legs:
            if leg.amount == 0:
                continue
            after = balances_after.get(leg.account_id)
            tx_ids.append(draft.id)
            accounts.append(leg.account_id)
            buckets.append(leg.bucket)
            amounts.append(leg.amount)
            avail_after.append(after[0] if after else None)
            held_after.append(after[1] if after else None)
    if not tx_ids:
        return
    await conn.execute(
        sql(
            """
            INSERT INTO postings (transaction_id, account_id, bucket, amount,
                                  available_after, held_after)
            SELECT * FROM unnest(CAST(:tx AS uuid[]), CAST(:account AS bigint[]),
                                 CAST(:bucket AS text[]), CAST(:amount AS bigint[]),
                                 CAST(:avail AS bigint[]), CAST(:held AS bigint[]))
            """
        ),
        {
            "tx": tx_ids,
            "account": accounts,
            "bucket": buckets,
            "amount": amounts,
            "avail": avail_after,
            "held": held_after,
        },
    )


async def adjust_accounts(
    conn: AsyncConnection, deltas: dict[int, tuple[int, int]]
) -> dict[int, tuple[int, int]]:
    """Apply (available, held) deltas per user account; return balances after."""
    if not deltas:
        return {}
    ids = list(deltas)
    rows = await conn.execute(
        sql(
            """
            UPDATE accounts a
               SET available = a.available + d.avail, held = a.held + d.held
              FROM unnest(CAST(:ids AS bigint[]), CAST(:avail AS bigint[]),
                          CAST(:held AS bigint[])) AS d(id, avail, held)
             WHERE a.id = d.id
         RETURNING a.id, a.available, a.held
            """
        ),
        {"ids": ids, "avail": [deltas[i][0] for i in ids], "held": [deltas[i][1] for i in ids]},
    )
    return {row.id: (row.available, row.held) for row in rows}


async def take_from_batches(
    conn: AsyncConnection, takes: Sequence[tuple[uuid.UUID, int, int]]
) -> list[Allocation]:
    """Debit (transaction id, account id, credits) from open batches, earliest expiry first.

    One statement for all accounts: a running sum over each account's open batches in
    spend order decides how much each batch gives. The caller has checked the balance;
    a shortfall here means the balance and the batches disagree, so it raises.
    """
    if not takes:
        return []
    rows = await conn.execute(
        sql(
            """
            WITH req AS (
                SELECT * FROM unnest(CAST(:tx AS uuid[]), CAST(:account AS bigint[]),
                                     CAST(:credits AS bigint[])) AS r(tx_id, account_id, credits)
            ), cand AS (
                SELECT b.id, b.expires_at, b.acquired_at, b.source, b.remaining, r.tx_id, r.credits,
                       (sum(b.remaining) OVER (
                           PARTITION BY b.account_id
                           ORDER BY b.expires_at, b.acquired_at, b.id))::bigint AS upto
                  FROM req r
                  JOIN credit_batches b
                    ON b.account_id = r.account_id AND b.status = 'open' AND b.remaining > 0
            ), take AS (
                SELECT id, expires_at, acquired_at, source, tx_id,
                       LEAST(remaining, credits - (upto - remaining)) AS n
                  FROM cand WHERE upto - remaining < credits
            ), upd AS (
                UPDATE credit_batches b SET remaining = b.remaining - t.n
                  FROM take t WHERE b.id = t.id
            ), ins AS (
                INSERT INTO batch_allocations (transaction_id, batch_id, amount)
                SELECT tx_id, id, -n FROM take
            )
            SELECT tx_id, id, n, expires_at, source FROM take
             ORDER BY tx_id, expires_at, acquired_at, id
            """
        ),
        {
            "tx": [t[0] for t in takes],
            "account": [t[1] for t in takes],
            "credits": [t[2] for t in takes],
        },
    )
    allocations = [
        Allocation(row.tx_id, row.id, -row.n, row.expires_at, row.source) for row in rows
    ]
    taken: dict[uuid.UUID, int] = {}
    for allocation in allocations:
        taken[allocation.transaction_id] = (
            taken.get(allocation.transaction_id, 0) - allocation.amount
        )
    for tx_id, _account, credits in takes:
        if taken.get(tx_id, 0) != credits:
            raise RuntimeError(
                f"batches gave {taken.get(tx_id, 0)} of {credits} credits for {tx_id}: "
                "balance and batches disagree; run `pika-payment reconcile`"
            )
    return allocations


async def insert_batch(
    conn: AsyncConnection,
    *,
    batch_id: uuid.UUID,
    account_id: int,
    user_id: str,
    source: str,
    credits: int,
    expires_at: datetime,
    transaction_id: uuid.UUID,
    source_ref: str | None,
    purchase_id: uuid.UUID | None = None,
) -> None:
    # clock_timestamp(), not the column default now(): now() is fixed for the whole DB
    # transaction, so batches granted to one user in one worker batch would tie on
    # acquired_at and be spent in random id order instead of oldest first.
    await conn.execute(
        sql(
            """
            INSERT INTO credit_batches (id, account_id, user_id, source, amount, remaining,
                                        acquired_at, expires_at, transaction_id, source_ref,
                                        purchase_id)
            VALUES (:id, :account, :user_id, :source, :credits, :credits, clock_timestamp(),
                    :expires_at, :tx, :ref, :purchase)
            """
        ),
        {
            "id": batch_id,
            "account": account_id,
            "user_id": user_id,
            "source": source,
            "credits": credits,
            "expires_at": expires_at,
            "tx": transaction_id,
            "ref": source_ref,
            "purchase": purchase_id,
        },
    )


async def insert_allocations(conn: AsyncConnection, allocations: Sequence[Allocation]) -> None:
    if not allocations:
        return
    await conn.execute(
        sql(
            """
            INSERT INTO batch_allocations (transaction_id, batch_id, amount, origin_batch_id,
                                           debit_transaction_id)
            SELECT * FROM unnest(CAST(:tx AS uuid[]), CAST(:batch AS uuid[]),
                                 CAST(:amount AS bigint[]), CAST(:origin AS uuid[]),
                                 CAST(:debit AS uuid[]))
            """
        ),
        {
            "tx": [a.transaction_id for a in allocations],
            "batch": [a.batch_id for a in allocations],
            "amount": [a.amount for a in allocations],
            "origin": [a.origin_batch_id for a in allocations],
            "debit": [a.debit_transaction_id for a in allocations],
        },
    )


@dataclass(frozen=True)
class OpenBatch:
    id: uuid.UUID
    remaining: int
    expires_at: datetime
    source: str


async def lock_purchase_batches(
    conn: AsyncConnection, purchase_id: uuid.UUID, first: Sequence[uuid.UUID] = ()
) -> list[OpenBatch]:
    """Open batches bought by a purchase: those granted by the transactions in `first`
    in that order (a refund takes gifts first), then the rest (returned credits)."""
    rows = await conn.execute(
        sql(
            """
            SELECT id, remaining, expires_at, source FROM credit_batches
             WHERE purchase_id = :purchase AND status = 'open'
             ORDER BY coalesce(array_position(CAST(:ids AS uuid[]), transaction_id), 1000),
                      expires_at, id
               FOR UPDATE
            """
        ),
        {"purchase": purchase_id, "ids": list(first)},
    )
    return [OpenBatch(r.id, r.remaining, r.expires_at, r.source) for r in rows]


async def debit_batches(conn: AsyncConnection, allocations: Sequence[Allocation]) -> None:
    """Take the (negative) allocation amounts from their batches and record them."""
    if not allocations:
        return
    await conn.execute(
        sql(
            """
            UPDATE credit_batches b SET remaining = b.remaining + d.n
              FROM unnest(CAST(:batch AS uuid[]), CAST(:n AS bigint[])) AS d(id, n)
             WHERE b.id = d.id
            """
        ),
        {"batch": [a.batch_id for a in allocations], "n": [a.amount for a in allocations]},
    )
    await insert_allocations(conn, allocations)


async def add_to_batch_remaining(conn: AsyncConnection, batch_id: uuid.UUID, credits: int) -> None:
    await conn.execute(
        sql("UPDATE credit_batches SET remaining = remaining + :n WHERE id = :id"),
        {"n": credits, "id": batch_id},
    )


async def outstanding_by_batch(
    conn: AsyncConnection, debit_transaction_id: uuid.UUID
) -> list[tuple[uuid.UUID, int, str, datetime, str, uuid.UUID | None]]:
    """Credits a debit took per batch and has not yet got back, latest expiry first.

    Returns (batch id, outstanding, status, expires_at, source, purchase id); the latest-expiring
    batches come first so a partial return gives the user the longest-lived credits.
    """
    rows = await conn.execute(
        sql(
            """
            WITH taken AS (
                SELECT batch_id, -amount AS n FROM batch_allocations
                 WHERE transaction_id = :debit AND amount < 0 AND origin_batch_id IS NULL
            ), returned AS (
                SELECT origin_batch_id AS batch_id, sum(amount)::bigint AS n FROM batch_allocations
                 WHERE debit_transaction_id = :debit GROUP BY origin_batch_id
            )
            SELECT b.id, t.n - coalesce(r.n, 0) AS outstanding, b.status, b.expires_at,
                   b.source, b.purchase_id
              FROM taken t
              JOIN credit_batches b ON b.id = t.batch_id
              LEFT JOIN returned r ON r.batch_id = t.batch_id
             WHERE t.n - coalesce(r.n, 0) > 0
             ORDER BY b.expires_at DESC, b.acquired_at DESC, b.id DESC
            """
        ),
        {"debit": debit_transaction_id},
    )
    return [(r.id, r.outstanding, r.status, r.expires_at, r.source, r.purchase_id) for r in rows]


async def lock_batch(conn: AsyncConnection, batch_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.execute(
        sql(
            "SELECT id, account_id, user_id, remaining, status, expires_at, source "
            "FROM credit_batches WHERE id = :id FOR UPDATE"
        ),
        {"id": batch_id},
    )
    found = row.mappings().first()
    return dict(found) if found else None


async def expire_batch_row(conn: AsyncConnection, batch_id: uuid.UUID) -> None:
    await conn.execute(
        sql("UPDATE credit_batches SET remaining = 0, status = 'expired' WHERE id = :id"),
        {"id": batch_id},
    )


async def find_transaction(conn: AsyncConnection, tx_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.execute(
        sql(
            "SELECT id, type, user_id, credits, hold_id, related_transaction_id, reference "
            "FROM ledger_transactions WHERE id = :id"
        ),
        {"id": tx_id},
    )
    found = row.mappings().first()
    return dict(found) if found else None


async def refunded_credits(conn: AsyncConnection, tx_id: uuid.UUID) -> int:
    value = await conn.scalar(
        sql(
            "SELECT coalesce(sum(credits), 0) FROM ledger_transactions "
            "WHERE related_transaction_id = :id AND type = 'CREDIT_REFUND'"
        ),
        {"id": tx_id},
    )
    return int(value or 0)


async def insert_hold(conn: AsyncConnection, hold: Hold) -> None:
    await conn.execute(
        sql(
            """
            INSERT INTO holds (id, account_id, user_id, reference, credits, status,
                               expires_at, transaction_id, kind)
            VALUES (:id, :account, :user_id, :reference, :credits, 'open', :expires_at, :tx,
                    :kind)
            """
        ),
        {
            "id": hold.id,
            "account": hold.account_id,
            "user_id": hold.user_id,
            "reference": hold.reference,
            "credits": hold.credits,
            "expires_at": hold.expires_at,
            "tx": hold.transaction_id,
            "kind": hold.kind,
        },
    )


HOLD_COLUMNS = "id, account_id, user_id, reference, credits, status, expires_at, transaction_id, kind"


async def find_hold(
    conn: AsyncConnection, user_id: str, hold_id: uuid.UUID | None, reference: str | None
) -> Hold | None:
    """The user's hold by id, or their open booking hold for a reference (newest first).

    By id it may be a freeze: the caller decides whether it may touch that kind.
    """
    params: dict[str, Any] = {"user_id": user_id}
    if hold_id is not None:
        where, params["hold_id"] = "id = :hold_id AND user_id = :user_id", hold_id
    else:
        where = "user_id = :user_id AND reference = :reference AND kind = 'booking'"
        params["reference"] = reference
    row = await conn.execute(
        sql(
            f"SELECT {HOLD_COLUMNS} FROM holds WHERE {where} "
            "ORDER BY (status = 'open') DESC, created_at DESC LIMIT 1 FOR UPDATE"
        ),
        params,
    )
    found = row.first()
    return Hold(*found) if found else None


async def open_freezes(conn: AsyncConnection, user_id: str, reference: str) -> list[Hold]:
    """Every open freeze with this reference (a dispute may freeze several times)."""
    rows = await conn.execute(
        sql(
            f"SELECT {HOLD_COLUMNS} FROM holds WHERE user_id = :u AND reference = :r "
            "AND status = 'open' AND kind = 'freeze' ORDER BY created_at, id FOR UPDATE"
        ),
        {"u": user_id, "r": reference},
    )
    return [Hold(*row) for row in rows]


async def open_hold_exists(conn: AsyncConnection, user_id: str, reference: str) -> bool:
    found = await conn.scalar(
        sql(
            "SELECT 1 FROM holds WHERE user_id = :u AND reference = :r AND status = 'open' "
            "AND kind = 'booking'"
        ),
        {"u": user_id, "r": reference},
    )
    return found is not None


async def settle_hold(
    conn: AsyncConnection, hold_id: uuid.UUID, status: str, transaction_id: uuid.UUID
) -> None:
    await conn.execute(
        sql("UPDATE holds SET status = :status, settled_transaction_id = :tx WHERE id = :id"),
        {"status": status, "tx": transaction_id, "id": hold_id},
    )


async def claim_commands(
    conn: AsyncConnection, commands: Sequence[tuple[uuid.UUID, str, str, str]]
) -> set[uuid.UUID]:
    """Claim (command id, type, user id, fingerprint) rows; returns the ids this
    transaction owns.

    Inserting the `processed_commands` row first, with ON CONFLICT DO NOTHING, makes a
    second transaction holding the same id (a copy on another partition, a batch
    redelivered during a rebalance) wait on the unique index until the first commits,
    then skip it, instead of applying it and failing the whole batch on commit. Ids
    are claimed in sorted order so two claimers cannot deadlock on each other. The
    placeholder result is replaced by `record_processed` before commit, so no other
    transaction ever sees it.
    """
    if not commands:
        return set()
    ordered = sorted(commands, key=lambda c: c[0])
    rows = await conn.execute(
        sql(
            """
            INSERT INTO processed_commands (command_id, type, user_id, status, result,
                                            fingerprint)
            SELECT id, type, user_id, 'applied', '{}'::jsonb, fingerprint
              FROM unnest(CAST(:id AS uuid[]), CAST(:type AS text[]), CAST(:user_id AS text[]),
                          CAST(:fingerprint AS text[]))
                   WITH ORDINALITY AS c(id, type, user_id, fingerprint, n)
             ORDER BY n
            ON CONFLICT (command_id) DO NOTHING
            RETURNING command_id
            """
        ),
        {
            "id": [c[0] for c in ordered],
            "type": [c[1] for c in ordered],
            "user_id": [c[2] for c in ordered],
            "fingerprint": [c[3] for c in ordered],
        },
    )
    return {row[0] for row in rows}


async def claims_of(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str, str | None]]:
    """(type, user id, fingerprint) each of these command ids was first used for."""
    if not ids:
        return {}
    rows = await conn.execute(
        sql(
            "SELECT command_id, type, user_id, fingerprint FROM processed_commands "
            "WHERE command_id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": list(ids)},
    )
    return {row.command_id: (row.type, row.user_id, row.fingerprint) for row in rows}


async def record_processed(
    conn: AsyncConnection,
    rows: Sequence[tuple[uuid.UUID, str, str | None, dict[str, Any]]],
) -> None:
    """(command id, status, error code, result) of commands this transaction claimed."""
    if not rows:
        return
    await conn.execute(
        sql(
            """
            UPDATE processed_commands p
               SET status = d.status, error_code = d.code, result = d.result
              FROM unnest(CAST(:id AS uuid[]), CAST(:status AS text[]), CAST(:code AS text[]),
                          CAST(:result AS jsonb[])) AS d(id, status, code, result)
             WHERE p.command_id = d.id
            """
        ),
        {
            "id": [r[0] for r in rows],
            "status": [r[1] for r in rows],
            "code": [r[2] for r in rows],
            "result": [_json(r[3]) for r in rows],
        },
    )


async def insert_outbox(
    conn: AsyncConnection,
    rows: Sequence[tuple[uuid.UUID, uuid.UUID | None, str, str, str, str]],
) -> None:
    """(event id, command id, topic, key, event type, JSON payload) in publish order."""
    if not rows:
        return
    await conn.execute(
        sql(
            """
            INSERT INTO outbox (event_id, command_id, topic, key, event_type, payload)
            SELECT event_id, command_id, topic, key, type, payload
              FROM unnest(CAST(:event_id AS uuid[]), CAST(:command_id AS uuid[]),
                          CAST(:topic AS text[]), CAST(:key AS text[]),
                          CAST(:type AS text[]), CAST(:payload AS jsonb[]))
                     WITH ORDINALITY AS o(event_id, command_id, topic, key, type, payload, n)
            ORDER BY n
            """
        ),
        {
            "event_id": [r[0] for r in rows],
            "command_id": [r[1] for r in rows],
            "topic": [r[2] for r in rows],
            "key": [r[3] for r in rows],
            "type": [r[4] for r in rows],
            "payload": [r[5] for r in rows],
        },
    )


# Wakes the relay at commit; a lost notification only delays it to its next poll.
NOTIFY_OUTBOX = text("NOTIFY pika_outbox")
