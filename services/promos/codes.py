"""Promo codes as admins keep them: created, changed (limits, dates, active), listed.

Codes are stored upper-case and compared case-insensitively (`summer10` is `SUMMER10`).
What a code gives (kind and amount) never changes once created: reservations and
purchases made with it keep meaning what they meant.
"""

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue_store import update_row
from services.errors import InvalidState, NotFound

COLUMNS = (
    "id, code, kind, percent_off, amount_off_minor, currency, bonus_credits, bonus_expiry_days, "
    "trial_days, usage_limit, per_user_limit, new_customers_only, allowed_users, valid_from, "
    "valid_until, minimum_amount_minor, pack_ids, plan_ids, active, created_at"
)
EDITABLE = {
    "usage_limit", "per_user_limit", "new_customers_only", "allowed_users", "valid_from",
    "valid_until", "minimum_amount_minor", "pack_ids", "plan_ids", "active",
}
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


def normalize(code: str) -> str:
    return code.strip().upper()


def code_view(row: Any) -> dict[str, Any]:
    view = {k: v for k, v in dict(row).items() if k not in ("amount_off_minor", "minimum_amount_minor")}
    view["amount_off"] = row["amount_off_minor"]
    view["minimum_amount"] = row["minimum_amount_minor"]
    view["currency"] = row["currency"].strip() if row["currency"] else None
    return view


async def create_code(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any]:
    """`values` has every field of the API's create model (defaults included)."""
    params = {**values, "id": uuid.uuid4(), "code": normalize(values["code"])}
    params["amount_off_minor"] = params.pop("amount_off")
    params["minimum_amount_minor"] = params.pop("minimum_amount")
    columns = [c.strip() for c in COLUMNS.split(",") if c.strip() != "created_at"]
    insert = text(
        f"INSERT INTO promo_codes ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + c for c in columns)}) RETURNING {COLUMNS}"
    )
    try:
        async with conn.begin_nested():
            row = (await conn.execute(insert, {c: params[c] for c in columns})).mappings().one()
    except IntegrityError as error:
        raise InvalidState("a promo code with this code exists", code=params["code"]) from error
    return code_view(row)


async def update_code(conn: AsyncConnection, code_id: uuid.UUID, changes: dict[str, Any]) -> dict[str, Any]:
    changes = {("minimum_amount_minor" if k == "minimum_amount" else k): v for k, v in changes.items()}
    if not EDITABLE & changes.keys():
        return await get_code(conn, code_id)
    row = await update_row(conn, "promo_codes", str(code_id), changes, editable=EDITABLE,
                           columns=COLUMNS)
    if row is None:
        raise NotFound("no such promo code", id=str(code_id))
    return code_view(row)


async def get_code(conn: AsyncConnection, code_id: uuid.UUID) -> dict[str, Any]:
    row = (
        await conn.execute(text(f"SELECT {COLUMNS} FROM promo_codes WHERE id = :id"), {"id": code_id})
    ).mappings().first()
    if row is None:
        raise NotFound("no such promo code", id=str(code_id))
    return code_view(row)


async def list_codes(conn: AsyncConnection) -> list[dict[str, Any]]:
    cols = ", ".join(f"c.{c.strip()}" for c in COLUMNS.split(","))
    rows = await conn.execute(
        text(f"SELECT {cols}, {USES} FROM promo_codes c ORDER BY c.created_at DESC, c.code")
    )
    return [code_view(r) | {"live_uses": r["live_uses"], "redemptions": r["redemptions"]}
            for r in rows.mappings()]


async def find_by_code(conn: AsyncConnection, code: str, *, lock: bool = False) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            text(f"SELECT {COLUMNS} FROM promo_codes WHERE code = :c" + (" FOR UPDATE" if lock else "")),
            {"c": normalize(code)},
        )
    ).mappings().first()
    return dict(row) if row else None
