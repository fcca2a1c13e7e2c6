"""Promo codes as admins keep them: created, changed (limits, dates, active), listed.

Codes are stored upper-case and compared case-insensitively (`summer10` is `SUMMER10`).
What a code gives (kind and amount) never changes once created: reservations and
purchases made with it keep meaning what they meant.
"""

import uuid
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.errors import InvalidState, NotFound
from services.promos.code_store import (
    EDITABLE,
    code_row,
    code_row_by_code,
    code_rows_with_uses,
    insert_code,
    update_code_row,
)


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
    try:
        async with conn.begin_nested():
            row = await insert_code(conn, params)
    except IntegrityError as error:
        raise InvalidState("a promo code with this code exists", code=params["code"]) from error
    return code_view(row)


async def update_code(conn: AsyncConnection, code_id: uuid.UUID, changes: dict[str, Any]) -> dict[str, Any]:
    changes = {("minimum_amount_minor" if k == "minimum_amount" else k): v for k, v in changes.items()}
    if not EDITABLE & changes.keys():
        return await get_code(conn, code_id)
    row = await update_code_row(conn, code_id, changes)
    if row is None:
        raise NotFound("no such promo code", id=str(code_id))
    return code_view(row)


async def get_code(conn: AsyncConnection, code_id: uuid.UUID) -> dict[str, Any]:
    row = await code_row(conn, code_id)
    if row is None:
        raise NotFound("no such promo code", id=str(code_id))
    return code_view(row)


async def list_codes(conn: AsyncConnection) -> list[dict[str, Any]]:
    return [code_view(r) | {"live_uses": r["live_uses"], "redemptions": r["redemptions"]}
            for r in await code_rows_with_uses(conn)]


async def find_by_code(conn: AsyncConnection, code: str, *, lock: bool = False) -> dict[str, Any] | None:
    row = await code_row_by_code(conn, normalize(code), lock=lock)
    return dict(row) if row else None
