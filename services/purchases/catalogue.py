"""Credit packs: the catalogue users buy from, changed by admins only."""

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue_store import update_row
from services.errors import InvalidState, NotFound

COLUMNS = "id, name, credits, bonus_credits, price_minor, currency, active"


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
    where = "" if include_archived else "WHERE active"
    rows = await conn.execute(text(f"SELECT {COLUMNS} FROM credit_packs {where} ORDER BY price_minor, id"))
    return [pack_view(r) for r in rows.mappings()]


async def get_pack(conn: AsyncConnection, pack_id: str, *, active_only: bool = True) -> dict[str, Any]:
    row = (
        await conn.execute(text(f"SELECT {COLUMNS} FROM credit_packs WHERE id = :id"), {"id": pack_id})
    ).mappings().first()
    if row is None or (active_only and not row["active"]):
        raise NotFound("no such credit pack", packId=pack_id)
    return pack_view(row)


async def create_pack(conn: AsyncConnection, pack: dict[str, Any]) -> dict[str, Any]:
    created = (
        await conn.execute(
            text(
                f"""
                INSERT INTO credit_packs (id, name, credits, bonus_credits, price_minor, currency)
                VALUES (:id, :name, :credits, :bonus_credits, :price, :currency)
                ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}
                """
            ),
            pack,
        )
    ).mappings().first()
    if created is None:
        raise InvalidState("a credit pack with this id exists", packId=pack["id"])
    return pack_view(created)


async def update_pack(conn: AsyncConnection, pack_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Change name, credits, bonus, price or the active flag (archive = inactive).

    Purchases keep the terms they were made at (credits and amount are copied onto the
    purchase), so changing a pack never changes what an open purchase grants.
    """
    allowed = {"name", "credits", "bonus_credits", "price", "currency", "active"}
    if not allowed & changes.keys():
        return await get_pack(conn, pack_id, active_only=False)
    row = await update_row(conn, "credit_packs", pack_id, changes, editable=allowed, columns=COLUMNS)
    if row is None:
        raise NotFound("no such credit pack", packId=pack_id)
    return pack_view(row)
