"""Read side of the ledger: balance, history and command status, straight from Postgres.

Each read is one statement, so it sees one snapshot and costs one round trip, on a
use case's SQLAlchemy connection or on the ingress's read pool alike (services.db.Reader).
"""

import base64
import functools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, text

from services.db import Reader, rows_of
from services.errors import ValidationFailed

# The account and its open batches (none: one row of NULL batch columns), in spend order.
BALANCE = text(
    """
    SELECT a.available, a.held, b.id, b.source, b.amount, b.remaining, b.acquired_at,
           b.expires_at
      FROM accounts a
      LEFT JOIN credit_batches b
        ON b.account_id = a.id AND b.status = 'open' AND b.remaining > 0
     WHERE a.user_id = :u
     ORDER BY b.expires_at, b.acquired_at, b.id
    """
)
BATCH_COLUMNS = ("id", "source", "amount", "remaining", "acquired_at", "expires_at")
HISTORY = """
    WITH account AS (SELECT id FROM accounts WHERE user_id = :u),
    mine AS (
        (SELECT seq FROM ledger_transactions WHERE user_id = :u {where} ORDER BY seq DESC
          LIMIT :limit)
        UNION
        (SELECT seq FROM ledger_transactions WHERE counterparty_user_id = :u {where}
          ORDER BY seq DESC LIMIT :limit)
    )
    SELECT t.id, t.seq, t.type, t.status, t.amount_minor, t.currency,
           t.stripe_payment_intent_id, t.reference, t.related_transaction_id, t.metadata,
           t.created_at, p.avail_delta, p.held_delta, p.available_after, p.held_after
      FROM ledger_transactions t
      JOIN mine USING (seq)
      JOIN LATERAL (
          SELECT coalesce(sum(amount) FILTER (WHERE bucket = 'available'), 0)::bigint
                     AS avail_delta,
                 coalesce(sum(amount) FILTER (WHERE bucket = 'held'), 0)::bigint AS held_delta,
                 max(available_after) AS available_after, max(held_after) AS held_after
            FROM postings
           WHERE transaction_id = t.id AND account_id = (SELECT id FROM account)
      ) p ON true
     WHERE EXISTS (SELECT 1 FROM account)
     ORDER BY t.seq DESC LIMIT :limit
"""
COMMAND = text(
    "SELECT command_id, type, user_id, status, error_code, result, fingerprint "
    "FROM processed_commands WHERE command_id = :id"
)


@functools.cache
def history_statement(where: str) -> TextClause:
    """HISTORY with these filters; one statement object per combination of filters, so
    its compiled (and prepared) form is reused."""
    return text(HISTORY.format(where=where))


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("s"):
            raise ValueError(raw)
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError) as error:
        raise ValidationFailed("cursor is not valid", cursor=cursor[:100]) from error


async def balance(source: Reader, user_id: str) -> dict[str, Any]:
    rows = await rows_of(source, BALANCE, {"u": user_id})
    if not rows:
        return {"user_id": user_id, "available": 0, "held": 0, "total": 0, "batches": []}
    account = rows[0]
    return {
        "user_id": user_id,
        "available": account["available"],
        "held": account["held"],
        "total": account["available"] + account["held"],
        "batches": [{c: r[c] for c in BATCH_COLUMNS} for r in rows if r["id"] is not None],
    }


async def history(
    source: Reader,
    user_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    types: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; the cursor is the last item's sequence number (opaque to clients)."""
    params: dict[str, Any] = {"u": user_id, "limit": limit + 1}
    where = []
    if cursor:
        params["before"] = decode_cursor(cursor)
        where.append("AND seq < :before")
    if types:
        params["types"] = types
        where.append("AND type = ANY(CAST(:types AS text[]))")
    if since:
        params["since"] = since
        where.append("AND created_at >= :since")
    if until:
        params["until"] = until
        where.append("AND created_at < :until")
    rows = await rows_of(source, history_statement(" ".join(where)), params)
    items = [
        {
            "id": r["id"],
            "user_id": user_id,
            "type": r["type"],
            "amount": r["amount_minor"],
            "currency": r["currency"].strip() if r["currency"] else None,
            "credits": r["avail_delta"],
            "held_credits": r["held_delta"],
            "status": r["status"],
            "stripe_payment_intent_id": r["stripe_payment_intent_id"],
            "reference": r["reference"],
            "related_transaction_id": r["related_transaction_id"],
            "metadata": r["metadata"],
            "created_at": r["created_at"],
            "balance_after": r["available_after"] or 0,
            "held_after": r["held_after"] or 0,
            "_seq": r["seq"],
        }
        for r in rows
    ]
    next_cursor = encode_cursor(items[limit - 1]["_seq"]) if len(items) > limit else None
    for item in items:
        del item["_seq"]
    return items[:limit], next_cursor


async def command_status(source: Reader, command_id: uuid.UUID) -> dict[str, Any] | None:
    rows = await rows_of(source, COMMAND, {"id": command_id})
    return dict(rows[0]) if rows else None
