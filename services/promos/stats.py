"""How a promo code performed, from its reservations, purchases and the ledger."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.promos.codes import get_code
from services.promos.stats_queries import STATS

# What counts as spending a bonus batch: charges and holds take, refunds and releases
# give back; freezes (disputes, fraud) and their settlements are not spending.


async def promo_stats(conn: AsyncConnection, code_id: uuid.UUID) -> dict[str, Any]:
    """Spent = taken by charges and holds, less what refunds and releases gave back."""
    code = await get_code(conn, code_id)
    row = (await conn.execute(STATS, {"id": code_id})).mappings().one()
    return {
        "code_id": code_id,
        "code": code["code"],
        "reservations": row["reservations"],
        "live_reservations": row["live"],
        "redemptions": row["redemptions"],
        "released": row["released"],
        "discount_given": row["discount_given"],
        "revenue": row["revenue"],
        "currency": row["currency"].strip() if row["currency"] else None,
        "bonus_credits_granted": row["bonus_granted"],
        "bonus_credits_spent": row["bonus_spent"],
        "bonus_credits_clawed_back": row["bonus_clawed"],
    }
