"""What memberships need from the payment provider (Stripe), beside the purchase port.

The Stripe adapter (`adapters/stripe/client.py`) implements both; `services/` never
imports the SDK nor an adapter.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class SubscriptionState:
    """Stripe's answer about a subscription, reduced to what we keep."""

    id: str
    status: str
    stripe_plan_id: str | None
    item_id: str | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None = None
    ended_at: datetime | None = None
    client_secret: str | None = None
    """Of the latest invoice's PaymentIntent, when it still needs confirming."""
    metadata: dict[str, str] | None = None


class SubscriptionProvider(Protocol):
    async def create_customer(self, *, user_id: str, email: str | None, idempotency_key: str) -> str:
        ...

    async def attach_payment_method(self, *, customer_id: str, payment_method: str) -> str | None:
        """Attach a payment method and make it the customer's default for invoices;
        returns its card's fingerprint (the same card on any account has the same one),
        None when it is not a card."""
        ...

    async def save_plan(
        self,
        *,
        product_id: str | None,
        plan_id: str,
        name: str,
        active: bool,
        amount: int,
        currency: str,
        interval: str,
        interval_count: int,
        terms: str,
    ) -> tuple[str, str]:
        """Create or update the plan's Product and a (legacy) Stripe plan for its terms;
        returns (product id, Stripe plan id)."""
        ...

    async def create_subscription(
        self,
        *,
        customer_id: str,
        stripe_plan_id: str,
        metadata: dict[str, str],
        trial_days: int,
        idempotency_key: str,
    ) -> SubscriptionState:
        ...

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState:
        ...

    async def change_plan(
        self, *, subscription_id: str, item_id: str | None, stripe_plan_id: str, idempotency_key: str
    ) -> SubscriptionState:
        """Swap the subscription's item to another plan; Stripe prorates."""
        ...

    async def cancel_subscription(
        self, *, subscription_id: str, immediately: bool, idempotency_key: str
    ) -> SubscriptionState:
        ...
