"""The user's Stripe customer: created once, reused by purchases and memberships."""

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from services.purchases.purchase_store import FIND_CUSTOMER, SAVE_CUSTOMER


class CustomerProvider(Protocol):
    async def create_customer(self, *, user_id: str, email: str | None, idempotency_key: str) -> str:
        ...


async def ensure_customer(
    engine: AsyncEngine, provider: CustomerProvider, user_id: str, email: str | None
) -> str:
    """The stored customer id, else a new one (idempotency key per user, so a race or a
    retry makes one customer; the first stored row wins)."""
    async with engine.connect() as conn:
        found = await conn.scalar(FIND_CUSTOMER, {"u": user_id})
    if found is not None:
        return str(found)
    created = await provider.create_customer(
        user_id=user_id, email=email, idempotency_key=f"pika-customer-{user_id}"
    )
    async with engine.begin() as conn:
        await conn.execute(SAVE_CUSTOMER, {"u": user_id, "c": created, "e": email})
        return str(await conn.scalar(FIND_CUSTOMER, {"u": user_id}))
