"""Credit packs: the catalogue users buy from, changed by admins only."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.errors import InvalidState, NotFound
from services.purchases.pack_store import EDITABLE, insert_pack, pack_row, pack_rows, update_pack_row


def pack_view(row: Any) -> dict[str, Any]:
    credits = row["credits"] + row["bonus_credits"]
    return {
        "id": row["id"],
        "name": row["name"],
        "credits": row["credits"],
        "bonus_credits": row["bonus_credits"],
        "price": row["price_minor"],
        "currency": row["currency"].strip(),
        # Minor units per credit, rounded down: integer money, never a float.
        "price_per_credit": row["price_minor"] // credits,
        "active": row["active"],
    }


async def list_packs(conn: AsyncConnection, include_archived: bool = False) -> list[dict[str, Any]]:
    return [pack_view(r) for r in await pack_rows(conn, include_archived)]


async def get_pack(conn: AsyncConnection, pack_id: str, *, active_only: bool = True) -> dict[str, Any]:
    row = await pack_row(conn, pack_id)
    if row is None or (active_only and not row["active"]):
        raise NotFound("no such credit pack", packId=pack_id)
    return pack_view(row)


async def create_pack(conn: AsyncConnection, pack: dict[str, Any]) -> dict[str, Any]:
    created = await insert_pack(conn, pack)
    if created is None:
        raise InvalidState("a credit pack with this id exists", packId=pack["id"])
    return pack_view(created)


async def update_pack(conn: AsyncConnection, pack_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change name, credits, bonus, price or the active flag (archive = inactive).

    Purchases keep the terms they were made at (credits and amount are copied onto the
    purchase), so changing a pack never changes what an open purchase grants.
    """
    if not EDITABLE & changes.keys():
        return await get_pack(conn, pack_id, active_only=False)
    row = await update_pack_row(conn, pack_id, changes)
    if row is None:
        raise NotFound("no such credit pack", packId=pack_id)
    return pack_view(row)
