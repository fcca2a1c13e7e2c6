"""The SQL of credit packs: the catalogue's rows and their Stripe ids.

The catalogue (`services.purchases.credit_packs`) owns the rules and the views.
"""

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.catalogue_store import update_row

COLUMNS = "id, name, credits, bonus_credits, price_minor, currency, active"
EDITABLE = frozenset({"name", "credits", "bonus_credits", "price", "currency", "active"})

ALL_PACKS = text(
    "SELECT id, name, price_minor, currency, active, stripe_product_id, stripe_price_id, "
    "stripe_price_terms FROM credit_packs ORDER BY id"
)

SAVE_IDS = text(
    "UPDATE credit_packs SET stripe_product_id = :product, stripe_price_id = :price, "
    "stripe_price_terms = :terms, updated_at = now() WHERE id = :id"
)


async def pack_rows(conn: AsyncConnection, include_archived: bool = False) -> list[Any]:
    """Packs cheapest first (archived ones only when asked)."""
    where = "" if include_archived else "WHERE active"
    rows = await conn.execute(text(f"SELECT {COLUMNS} FROM credit_packs {where} ORDER BY price_minor, id"))
    return list(rows.mappings())


async def pack_row(conn: AsyncConnection, pack_id: str) -> Any | None:
    return (
        await conn.execute(text(f"SELECT {COLUMNS} FROM credit_packs WHERE id = :id"), {"id": pack_id})
    ).mappings().first()


async def insert_pack(conn: AsyncConnection, pack: dict[str, Any]) -> Any | None:
    """The new row, or None when a pack with this id exists."""
    return (
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


async def update_pack_row(conn: AsyncConnection, pack_id: str, changes: dict[str, Any]) -> Any | None:
    """The row after the EDITABLE `changes`, or None when there is no such pack."""
    return await update_row(conn, "credit_packs", pack_id, changes, editable=set(EDITABLE), columns=COLUMNS)
