"""The Stripe adapter of `services.purchases.ports.PaymentProvider` (and, through
`StripeSubscriptions`, of `services.memberships.ports.SubscriptionProvider`).

Every call carries an idempotency key, so a retried request cannot create a second
customer or PaymentIntent. STRIPE_API_BASE points the SDK at the local emulator.
"""

from typing import Any

import stripe

from adapters.stripe.errors import stripe_errors
from adapters.stripe.subscriptions import StripeSubscriptions
from services.purchases.ports import CreatedCheckout, CreatedIntent
from services.settings import Settings


def make_client(settings: Settings) -> stripe.StripeClient:
    bases: Any = {"api": settings.stripe_api_base} if settings.stripe_api_base else {}
    return stripe.StripeClient(
        settings.stripe_secret_key,
        base_addresses=bases,
        stripe_version=settings.stripe_api_version,
        max_network_retries=2,
        http_client=stripe.HTTPXClient(),
    )


class StripeProvider(StripeSubscriptions):
    def __init__(self, settings: Settings) -> None:
        self.client = make_client(settings)
        self.settings = settings

    async def create_customer(self, *, user_id: str, email: str | None, idempotency_key: str) -> str:
        params: Any = {"metadata": {"userId": user_id}}
        if email:
            params["email"] = email
        with stripe_errors():
            customer = await self.client.v1.customers.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return str(customer.id)

    async def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer_id: str,
        metadata: dict[str, str],
        idempotency_key: str,
        payment_method: str | None = None,
    ) -> CreatedIntent:
        params: Any = {
            "amount": amount,
            "currency": currency,
            "customer": customer_id,
            "metadata": metadata,
            "payment_method_types": ["card"],
        }
        if payment_method:
            params["payment_method"] = payment_method
        with stripe_errors():
            intent = await self.client.v1.payment_intents.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return CreatedIntent(str(intent.id), str(intent.client_secret), str(intent.status))

    async def retrieve_payment_intent(self, intent_id: str) -> CreatedIntent:
        with stripe_errors():
            intent = await self.client.v1.payment_intents.retrieve_async(intent_id)
        return CreatedIntent(str(intent.id), str(intent.client_secret), str(intent.status))

    async def create_checkout_session(
        self,
        *,
        amount: int,
        currency: str,
        product_name: str,
        customer_id: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> CreatedCheckout:
        params: Any = {
            "mode": "payment",
            "customer": customer_id,
            "client_reference_id": metadata["purchaseId"],
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": amount,
                        "product_data": {"name": product_name},
                    },
                }
            ],
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": self.settings.checkout_success_url,
            "cancel_url": self.settings.checkout_cancel_url,
        }
        with stripe_errors():
            session = await self.client.v1.checkout.sessions.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return CreatedCheckout(str(session.id), str(session.url))

    async def refund(self, *, payment_intent_id: str, amount: int, idempotency_key: str) -> str:
        with stripe_errors():
            refund = await self.client.v1.refunds.create_async(
                params={"payment_intent": payment_intent_id, "amount": amount},
                options={"idempotency_key": idempotency_key},
            )
        return str(refund.id)


    async def save_product(
        self, *, product_id: str | None, pack_id: str, name: str, active: bool
    ) -> str:
        params: Any = {"name": name, "active": active, "metadata": {"packId": pack_id}}
        with stripe_errors():
            if product_id is None:
                product = await self.client.v1.products.create_async(
                    params=params, options={"idempotency_key": f"pika-product-{pack_id}"}
                )
            else:
                product = await self.client.v1.products.update_async(product_id, params=params)
        return str(product.id)

    async def create_price(
        self, *, product_id: str, amount: int, currency: str, idempotency_key: str
    ) -> str:
        params: Any = {"product": product_id, "unit_amount": amount, "currency": currency}
        with stripe_errors():
            price = await self.client.v1.prices.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return str(price.id)
