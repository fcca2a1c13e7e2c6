"""Read side of the ledger: balance, history and command status, straight from Postgres."""

import base64
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.errors import ValidationFailed

BALANCE = text("SELECT id, available, held FROM accounts WHERE user_id = :u")
OPEN_BATCHES = text(
    """
    SELECT id, source, amount, remaining, acquired_at, expires_at FROM credit_batches
     WHERE account_id = :account AND status = 'open' AND remaining > 0
     ORDER BY expires_at, acquired_at, id
    """
)
HISTORY = """
    WITH mine AS (
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
            FROM postings WHERE transaction_id = t.id AND account_id = :account
      ) p ON true
     ORDER BY t.seq DESC LIMIT :limit
"""
COMMAND = text(
    "SELECT command_id, type, user_id, status, error_code, result, fingerprint "
    "FROM processed_commands WHERE command_id = :id"
)


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


async def balance(conn: AsyncConnection, user_id: str) -> dict[str, Any]:
    account = (await conn.execute(BALANCE, {"u": user_id})).first()
    if account is None:
        return {"user_id": user_id, "available": 0, "held": 0, "total": 0, "batches": []}
    batches = (await conn.execute(OPEN_BATCHES, {"account": account.id})).mappings().all()
    return {
        "user_id": user_id,
        "available": account.available,
        "held": account.held,
        "total": account.available + account.held,
        "batches": [dict(b) for b in batches],
    }


async def history(
    conn: AsyncConnection,
    user_id: str,
    *,
    limit: int,
    cursor: str | None = None,
    types: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; the cursor is the last item's sequence number (opaque to clients)."""
    account_id = await conn.scalar(text("SELECT id FROM accounts WHERE user_id = :u"), {"u": user_id})
    if account_id is None:
        return [], None
    params: dict[str, Any] = {"u": user_id, "account": account_id, "limit": limit + 1}
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
    sql = HISTORY.format(where=" ".join(where))
    rows = (await conn.execute(text(sql), params)).mappings().all()
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


async def command_status(conn: AsyncConnection, command_id: uuid.UUID) -> dict[str, Any] | None:
    row = (await conn.execute(COMMAND, {"id": command_id})).mappings().first()
    return dict(row) if row else None
