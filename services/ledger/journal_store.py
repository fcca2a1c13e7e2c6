"""The double-entry journal: `ledger_transactions` and their `postings`.

All postings of one transaction are inserted by one statement: the database checks
per statement that they sum to zero.
"""

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger.models import TransactionDraft


def as_json(value: Any) -> str:
    """Compact JSON for a jsonb column (dates and ids as strings)."""
    return json.dumps(value, separators=(",", ":"), default=str)


COUNTED_DAILY = ("CREDIT_USAGE", "CREDIT_TRANSFER", "CREDIT_PURCHASE")
TRANSACTIONS_TODAY = text(
    """
    SELECT user_id, count(*) FROM ledger_transactions
     WHERE user_id = ANY(CAST(:users AS text[]))
       AND type IN ('CREDIT_USAGE', 'CREDIT_TRANSFER', 'CREDIT_PURCHASE')
       AND created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
     GROUP BY user_id
    """
)
INSERT_TRANSACTIONS = text(
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
)
INSERT_POSTINGS = text(
    """
    INSERT INTO postings (transaction_id, account_id, bucket, amount,
                          available_after, held_after)
    SELECT * FROM unnest(CAST(:tx AS uuid[]), CAST(:account AS bigint[]),
                         CAST(:bucket AS text[]), CAST(:amount AS bigint[]),
                         CAST(:avail AS bigint[]), CAST(:held AS bigint[]))
    """
)
FIND_TRANSACTION = text(
    "SELECT id, type, user_id, credits, hold_id, related_transaction_id, reference "
    "FROM ledger_transactions WHERE id = :id"
)
REFUNDED_CREDITS = text(
    "SELECT coalesce(sum(credits), 0) FROM ledger_transactions "
    "WHERE related_transaction_id = :id AND type = 'CREDIT_REFUND'"
)


async def transactions_today(conn: AsyncConnection, user_ids: Iterable[str]) -> dict[str, int]:
    """Counted transactions (charges, captures, transfers sent, purchases) per user
    since midnight UTC: what MAX_DAILY_TRANSACTIONS limits."""
    rows = await conn.execute(TRANSACTIONS_TODAY, {"users": list(set(user_ids))})
    return {user: int(count) for user, count in rows.all()}


def transaction_rows(drafts: Sequence[TransactionDraft]) -> dict[str, Any]:
    """INSERT_TRANSACTIONS' parameters: one array per column."""
    return {
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
        "metadata": [as_json(d.metadata) for d in drafts],
    }


async def insert_transactions(conn: AsyncConnection, drafts: Sequence[TransactionDraft]) -> None:
    if not drafts:
        return
    await conn.execute(INSERT_TRANSACTIONS, transaction_rows(drafts))


def posting_rows(
    drafts: Sequence[TransactionDraft], balances_after: dict[int, tuple[int, int]]
) -> dict[str, Any] | None:
    """INSERT_POSTINGS' parameters for the legs of `drafts` (None: no leg moves credits).

    User legs carry the account's balances after; an unbalanced draft raises here,
    before the database would refuse the whole statement.
    """
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
        return None
    return {
        "tx": tx_ids,
        "account": accounts,
        "bucket": buckets,
        "amount": amounts,
        "avail": avail_after,
        "held": held_after,
    }


async def insert_postings(
    conn: AsyncConnection,
    drafts: Sequence[TransactionDraft],
    balances_after: dict[int, tuple[int, int]],
) -> None:
    """Write the legs of `drafts`; user legs carry the account's balances after."""
    rows = posting_rows(drafts, balances_after)
    if rows is not None:
        await conn.execute(INSERT_POSTINGS, rows)


async def find_transaction(conn: AsyncConnection, tx_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.execute(FIND_TRANSACTION, {"id": tx_id})
    found = row.mappings().first()
    return dict(found) if found else None


async def refunded_credits(conn: AsyncConnection, tx_id: uuid.UUID) -> int:
    value = await conn.scalar(REFUNDED_CREDITS, {"id": tx_id})
    return int(value or 0)
