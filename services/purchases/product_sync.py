"""`pika-payment stripe-sync` / `POST /payment/products/sync`: packs as Stripe Products.

Purchases do not need them (PaymentIntents and Checkout use inline amounts); they
make the catalogue visible in Stripe's dashboard and reports. Every pack gets a
Product (name, active flag, metadata packId) and a Price for its current terms; a
changed price makes a new Price, since Stripe prices never change.
"""

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.purchases.pack_store import ALL_PACKS, SAVE_IDS
from services.purchases.ports import PaymentProvider


async def sync_products(
    engine: AsyncEngine,
    provider: PaymentProvider,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Returns one line per pack: its ids and whether a new price was made.

    `progress(done, total)` after each pack: every pack is a few Stripe calls.
    """
    async with engine.connect() as conn:
        packs = (await conn.execute(ALL_PACKS)).mappings().all()
    report = []
    for pack in packs:
        product = await provider.save_product(
            product_id=pack["stripe_product_id"],
            pack_id=pack["id"],
            name=pack["name"],
            active=pack["active"],
        )
        terms = f"{pack['price_minor']}:{pack['currency'].strip()}"
        price, new_price = pack["stripe_price_id"], False
        if price is None or pack["stripe_price_terms"] != terms:
            price = await provider.create_price(
                product_id=product,
                amount=pack["price_minor"],
                currency=pack["currency"].strip(),
                idempotency_key=f"pika-price-{pack['id']}-{terms}",
            )
            new_price = True
        async with engine.begin() as conn:
            await conn.execute(
                SAVE_IDS, {"product": product, "price": price, "terms": terms, "id": pack["id"]}
            )
        report.append(
            {"pack_id": pack["id"], "product_id": product, "price_id": price, "new_price": new_price}
        )
        if progress:
            progress(len(report), len(packs))
    return report
