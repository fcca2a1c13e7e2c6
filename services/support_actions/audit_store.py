"""The SQL of `admin_actions`: appending an action, and reading the audit trail.

An action's outcome is joined in, never stored: its status and error from
`processed_commands`, its ledger effect from `ledger_transactions` (by command id;
a command may write none, one or a few transactions).
"""

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.commands import CommandEnvelope
from services.errors import ValidationFailed
from services.support_actions.models import AdminAction

RECORD = text(
    """
    INSERT INTO admin_actions (id, admin_subject, action, user_id, reason, command_id,
                               command_type, idempotency_key, request)
    VALUES (:id, :admin, :action, :user, :reason, :command, :type, :key, CAST(:request AS jsonb))
    ON CONFLICT (command_id) DO NOTHING
    """
)

LIST = text(
    """
    SELECT a.id, a.seq, a.created_at, a.admin_subject, a.action, a.user_id, a.reason,
           a.command_id, a.command_type, a.request,
           p.status, p.error_code,
           coalesce(effects.rows, '[]'::jsonb) AS effects
      FROM admin_actions a
      LEFT JOIN processed_commands p ON p.command_id = a.command_id
      LEFT JOIN LATERAL (
            SELECT jsonb_agg(jsonb_build_object(
                       'transactionId', t.id, 'type', t.type, 'credits', t.credits,
                       'amount', t.amount_minor, 'currency', t.currency) ORDER BY t.seq) AS rows
              FROM ledger_transactions t
             WHERE t.command_id = a.command_id
           ) effects ON true
     WHERE (CAST(:user AS text) IS NULL OR a.user_id = :user)
       AND (CAST(:admin AS text) IS NULL OR a.admin_subject = :admin)
       AND (CAST(:since AS timestamptz) IS NULL OR a.created_at >= :since)
       AND (CAST(:until AS timestamptz) IS NULL OR a.created_at < :until)
       AND (CAST(:before AS bigint) IS NULL OR a.seq < :before)
     ORDER BY a.seq DESC
     LIMIT :limit
    """
)


async def record_action(conn: AsyncConnection, action: AdminAction, command: CommandEnvelope) -> None:
    """Append the action under its command id; the first record of an id stays (a retry
    with the same Idempotency-Key derives the same command id)."""
    await conn.execute(RECORD, {
        "id": action.id,
        "admin": action.admin[:255],
        "action": action.action,
        "user": command.user_id,
        "reason": action.reason,
        "command": command.id,
        "type": command.type,  # type: ignore[attr-defined]
        "key": action.idempotency_key,
        "request": json.dumps(action.request, sort_keys=True, default=str),
    })


def encode_cursor(seq: int) -> str:
    """The last row of a page, opaque to clients: its sequence number (the list's order)."""
    return base64.urlsafe_b64encode(f"audit:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, seq = raw.split(":", 1)
        if kind != "audit":
            raise ValueError(kind)
        return int(seq)
    except (ValueError, UnicodeDecodeError, binascii.Error) as error:
        raise ValidationFailed("cursor is not valid", cursor=cursor[:100]) from error


async def list_actions(
    conn: AsyncConnection,
    *,
    user_id: str | None,
    admin: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first: one page and the cursor of the next (None on the last page); one
    row more than asked tells whether a further page exists."""
    rows = await conn.execute(LIST, {
        "user": user_id, "admin": admin, "since": since, "until": until,
        "before": decode_cursor(cursor) if cursor else None, "limit": limit + 1,
    })
    found = [dict(r) for r in rows.mappings()]
    page = found[:limit]
    return page, encode_cursor(page[-1]["seq"]) if len(found) > limit else None
