"""Reads of fraud review (the admin list)."""

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.errors import NotFound

COLUMNS = (
    "id, user_id, rule, subject, severity, status, details, frozen_credits, created_at, "
    "resolved_at, resolved_by, resolution_note"
)


async def list_flags(
    conn: AsyncConnection, *, status: str | None, user_id: str | None, limit: int
) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            f"SELECT {COLUMNS} FROM fraud_flags "
            "WHERE (CAST(:status AS text) IS NULL OR status = :status) "
            "AND (CAST(:u AS text) IS NULL OR user_id = :u) "
            "ORDER BY created_at DESC, id LIMIT :limit"
        ),
        {"status": status, "u": user_id, "limit": limit},
    )
    return [dict(r) for r in rows.mappings()]


async def get_flag(conn: AsyncConnection, flag_id: uuid.UUID) -> dict[str, Any]:
    row = (
        await conn.execute(text(f"SELECT {COLUMNS} FROM fraud_flags WHERE id = :id"), {"id": flag_id})
    ).mappings().first()
    if row is None:
        raise NotFound("no such fraud flag", flagId=str(flag_id))
    return dict(row)
