"""What the purchase flow needs from a payment provider (Stripe in production).

`services/` never imports the Stripe SDK nor an adapter; the ingress builds the adapter
(`adapters/stripe/client.py`) and hands it in.
"""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CreatedIntent:
    id: str
    client_secret: str
    status: str


@dataclass(frozen=True)
class CreatedCheckout:
    id: str
    url: str


class PaymentProvider(Protocol):
    async def create_customer(self, *, user_id: str, email: str | None, idempotency_key: str) -> str:
        """Create the user's customer; returns its id."""
        ...

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
        """Create (not confirm) a PaymentIntent; the frontend confirms it."""
        ...

    async def retrieve_payment_intent(self, intent_id: str) -> CreatedIntent:
        """An existing PaymentIntent (a repeated purchase returns the first one)."""
        ...

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
        """A hosted Checkout page for one pack; its PaymentIntent carries `metadata` too."""
        ...

    async def refund(self, *, payment_intent_id: str, amount: int, idempotency_key: str) -> str:
        """Refund `amount` of a PaymentIntent's money; returns the refund id."""
        ...

    async def save_product(
        self, *, product_id: str | None, pack_id: str, name: str, active: bool
    ) -> str:
        """Create (product_id None) or update the pack's Product; returns its id."""
        ...

    async def create_price(
        self, *, product_id: str, amount: int, currency: str, idempotency_key: str
    ) -> str:
        """A new one-time Price (Stripe prices never change); returns its id."""
        ...
