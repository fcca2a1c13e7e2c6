"""Reads of fraud review (the admin list)."""

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.errors import NotFound, ValidationFailed

COLUMNS = (
    "id, user_id, rule, subject, severity, status, details, frozen_credits, created_at, "
    "resolved_at, resolved_by, resolution_note"
)


def encode_flag_cursor(row: dict[str, Any]) -> str:
    """The last flag of a page, opaque to clients: its time and id (the list's order)."""
    raw = f"{row['created_at'].isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_flag_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, flag_id = raw.split("|", 1)
        return datetime.fromisoformat(at), uuid.UUID(flag_id)
    except (ValueError, UnicodeDecodeError, binascii.Error) as error:
        raise ValidationFailed("cursor is not valid", cursor=cursor[:100]) from error


async def list_flags(
    conn: AsyncConnection,
    *,
    status: str | None,
    user_id: str | None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, one page and the cursor of the next (None when this is the last):
    one row more than asked tells whether a further page exists."""
    after_at, after_id = decode_flag_cursor(cursor) if cursor else (None, None)
    rows = await conn.execute(
        text(
            f"SELECT {COLUMNS} FROM fraud_flags "
            "WHERE (CAST(:status AS text) IS NULL OR status = :status) "
            "AND (CAST(:u AS text) IS NULL OR user_id = :u) "
            "AND (CAST(:after_at AS timestamptz) IS NULL "
            "     OR (created_at, id) < (CAST(:after_at AS timestamptz), CAST(:after_id AS uuid))) "
            "ORDER BY created_at DESC, id DESC LIMIT :limit"
        ),
        {"status": status, "u": user_id, "limit": limit + 1, "after_at": after_at,
         "after_id": after_id},
    )
    found = [dict(r) for r in rows.mappings()]
    page = found[:limit]
    return page, encode_flag_cursor(page[-1]) if len(found) > limit else None


async def get_flag(conn: AsyncConnection, flag_id: uuid.UUID) -> dict[str, Any]:
    row = (
        await conn.execute(text(f"SELECT {COLUMNS} FROM fraud_flags WHERE id = :id"), {"id": flag_id})
    ).mappings().first()
    if row is None:
        raise NotFound("no such fraud flag", flagId=str(flag_id))
    return dict(row)
