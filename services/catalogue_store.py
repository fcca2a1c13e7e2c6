"""The one way admins change a row of what is on offer (credit packs, membership
plans, promo codes): the shared UPDATE behind each of their `update_*` functions.

Only named columns change, and only by explicit admin requests; money never moves
through here (purchases and memberships copy the terms they were made at).
"""

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def update_row(
    conn: AsyncConnection,
    table: str,
    row_id: str,
    changes: dict[str, Any],
    *,
    editable: set[str],
    columns: str,
) -> Any | None:
    """Apply the editable `changes` (API name `price` is column `price_minor`); the row
    after, or None when there is no such row. Call only with some editable change."""
    allowed = {k: v for k, v in changes.items() if k in editable}
    sets = [f"{'price_minor' if k == 'price' else k} = :{k}" for k in allowed]
    return (
        await conn.execute(
            text(
                f"UPDATE {table} SET {', '.join(sets)}, updated_at = now() "
                f"WHERE id = :row_id RETURNING {columns}"
            ),
            {**allowed, "row_id": row_id},
        )
    ).mappings().first()
