"""The credit-pack catalogue's synchronous use cases: one unit of work each.

The HTTP controllers call these instead of opening connections; the pack rules are
`services.purchases.credit_packs` and its SQL is `services.purchases.pack_store`.
Purchases themselves (`checkout.start_purchase`) talk to Stripe between transactions
and take the engine.
"""

from typing import Any

from services.db import UnitOfWork
from services.memberships.plans import list_plans
from services.purchases import credit_packs as catalogue


async def list_packs(uow: UnitOfWork) -> list[dict[str, Any]]:
    """Active packs, cheapest first."""
    async with uow.read() as conn:
        return await catalogue.list_packs(conn)


async def get_pack(uow: UnitOfWork, pack_id: str) -> dict[str, Any]:
    """An active pack; PAY008 when there is none."""
    async with uow.read() as conn:
        return await catalogue.get_pack(conn, pack_id)


async def create_pack(uow: UnitOfWork, fields: dict[str, Any]) -> dict[str, Any]:
    async with uow.begin() as conn:
        return await catalogue.create_pack(conn, fields)


async def change_pack(uow: UnitOfWork, pack_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Open purchases keep the terms they were made at."""
    async with uow.begin() as conn:
        return await catalogue.update_pack(conn, pack_id, changes)


async def archive_pack(uow: UnitOfWork, pack_id: str) -> dict[str, Any]:
    """Archived, never deleted: purchases refer to it."""
    return await change_pack(uow, pack_id, {"active": False})


async def list_sale_currencies(uow: UnitOfWork) -> list[str]:
    """The currencies packs and plans are sold in, sorted (what a frontend offers)."""
    async with uow.read() as conn:
        offers = await catalogue.list_packs(conn) + await list_plans(conn)
    return sorted({offer["currency"] for offer in offers})
