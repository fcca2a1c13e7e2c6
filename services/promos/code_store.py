"""The SQL of promo codes: their rows, and what counts as a live use of one.

`services.promos.codes` owns the rules (normalized codes, what may change) and views.
"""

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue_store import update_row

COLUMNS = (
    "id, code, kind, percent_off, amount_off_minor, currency, bonus_credits, bonus_expiry_days, "
    "trial_days, usage_limit, per_user_limit, new_customers_only, allowed_users, valid_from, "
    "valid_until, minimum_amount_minor, pack_ids, plan_ids, active, created_at"
)
EDITABLE = frozenset({
    "usage_limit", "per_user_limit", "new_customers_only", "allowed_users", "valid_from",
    "valid_until", "minimum_amount_minor", "pack_ids", "plan_ids", "active",
})


def live_use(now: str, alias: str = "") -> str:
    """The one definition of a live use, which limits count: redeemed, or reserved and
    not expired at `now` (an SQL expression)."""
    a = f"{alias}." if alias else ""
    return f"({a}status = 'redeemed' OR ({a}status = 'reserved' AND {a}expires_at > {now}))"


USES = f"""
    (SELECT count(*) FROM promo_reservations r WHERE r.promo_code_id = c.id
        AND {live_use("now()", "r")}) AS live_uses,
    (SELECT count(*) FROM promo_reservations r WHERE r.promo_code_id = c.id
        AND r.status = 'redeemed') AS redemptions
"""


async def insert_code(conn: AsyncConnection, params: dict[str, Any]) -> Any:
    """The new row; IntegrityError when the code exists (call inside a savepoint)."""
    columns = [c.strip() for c in COLUMNS.split(",") if c.strip() != "created_at"]
    insert = text(
        f"INSERT INTO promo_codes ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)}) RETURNING {COLUMNS}"
    )
    return (await conn.execute(insert, {c: params[c] for c in columns})).mappings().one()


async def update_code_row(conn: AsyncConnection, code_id: uuid.UUID, changes: dict[str, Any]) -> Any | None:
    """The row after the EDITABLE `changes`, or None when there is no such code."""
    return await update_row(conn, "promo_codes", str(code_id), changes, editable=set(EDITABLE),
                            columns=COLUMNS)


async def code_row(conn: AsyncConnection, code_id: uuid.UUID) -> Any | None:
    return (
        await conn.execute(text(f"SELECT {COLUMNS} FROM promo_codes WHERE id = :id"), {"id": code_id})
    ).mappings().first()


async def code_rows_with_uses(conn: AsyncConnection) -> list[Any]:
    """Newest first, each with `live_uses` and `redemptions`."""
    cols = ", ".join(f"c.{c.strip()}" for c in COLUMNS.split(","))
    rows = await conn.execute(
        text(f"SELECT {cols}, {USES} FROM promo_codes c ORDER BY c.created_at DESC, c.code")
    )
    return list(rows.mappings())


async def code_row_by_code(conn: AsyncConnection, code: str, *, lock: bool) -> Any | None:
    """The row of a normalized `code`, locked FOR UPDATE when `lock`."""
    return (
        await conn.execute(
            text(f"SELECT {COLUMNS} FROM promo_codes WHERE code = :c" + (" FOR UPDATE" if lock else "")),
            {"c": code},
        )
    ).mappings().first()
