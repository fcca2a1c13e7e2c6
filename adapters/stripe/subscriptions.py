"""The Stripe adapter of `services.memberships.ports.SubscriptionProvider`."""

from datetime import UTC, datetime
from typing import Any

import stripe

from adapters.stripe.errors import stripe_errors
from services.memberships.ports import SubscriptionState


def from_epoch(epoch: Any) -> datetime | None:
    """Stripe's epoch seconds as an aware UTC datetime (None stays None)."""
    return datetime.fromtimestamp(int(epoch), UTC) if epoch else None


def subscription_state(sub: dict[str, Any]) -> SubscriptionState:
    """Stripe's subscription as we keep it. Works for API objects and event bodies alike."""
    items = (sub.get("items") or {}).get("data") or []
    item = items[0] if items else {}
    plan = item.get("plan") or sub.get("plan") or {}
    plan_id = plan.get("id") if isinstance(plan, dict) else plan
    invoice = sub.get("latest_invoice")
    intent = invoice.get("payment_intent") if isinstance(invoice, dict) else None
    secret = None
    if isinstance(intent, dict) and intent.get("status") in (
        "requires_payment_method", "requires_confirmation", "requires_action"
    ):
        secret = intent.get("client_secret")
    return SubscriptionState(
        id=str(sub["id"]),
        status=str(sub["status"]),
        stripe_plan_id=plan_id,
        item_id=item.get("id"),
        current_period_start=from_epoch(sub.get("current_period_start")),
        current_period_end=from_epoch(sub.get("current_period_end")),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        canceled_at=from_epoch(sub.get("canceled_at")),
        ended_at=from_epoch(sub.get("ended_at")),
        client_secret=secret,
        metadata=dict(sub.get("metadata") or {}),
    )


class StripeSubscriptions:
    """Subscriptions on legacy Stripe plans (`items=[{"plan": id}]`).

    Plans rather than Prices because the emulator the tests run against has no
    Prices; real Stripe still serves plans for recurring amounts (docs/decisions.md).
    Only calls that behave the same on Stripe and on localstripe are used: a payment
    method is attached and made the invoice default before subscribing, and a plan
    change swaps the one item (Stripe prorates by default).
    """

    client: stripe.StripeClient

    async def attach_payment_method(self, *, customer_id: str, payment_method: str) -> str | None:
        with stripe_errors():
            attached = await self.client.v1.payment_methods.attach_async(
                payment_method, params={"customer": customer_id}
            )
            await self.client.v1.customers.update_async(
                customer_id,
                params={"invoice_settings": {"default_payment_method": str(attached.id)}},
            )
        card = attached.to_dict().get("card") or {}
        fingerprint = card.get("fingerprint")
        return str(fingerprint) if fingerprint else None

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
        params: Any = {"name": name, "active": active, "metadata": {"planId": plan_id}}
        with stripe_errors():
            if product_id is None:
                product = await self.client.v1.products.create_async(
                    params=params, options={"idempotency_key": f"pika-plan-product-{plan_id}"}
                )
            else:
                product = await self.client.v1.products.update_async(product_id, params=params)
            plan = await self.client.v1.plans.create_async(
                params={
                    "amount": amount,
                    "currency": currency,
                    "interval": interval,
                    "interval_count": interval_count,
                    "product": str(product.id),
                    "metadata": {"planId": plan_id},
                },
                options={"idempotency_key": f"pika-plan-{plan_id}-{terms}"},
            )
        return str(product.id), str(plan.id)

    async def create_subscription(
        self,
        *,
        customer_id: str,
        stripe_plan_id: str,
        metadata: dict[str, str],
        trial_days: int,
        idempotency_key: str,
    ) -> SubscriptionState:
        params: Any = {
            "customer": customer_id,
            "items": [{"plan": stripe_plan_id}],
            "metadata": metadata,
            "expand": ["latest_invoice.payment_intent"],
        }
        if trial_days:
            params["trial_period_days"] = trial_days
        with stripe_errors():
            sub = await self.client.v1.subscriptions.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return subscription_state(sub.to_dict())

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState:
        with stripe_errors():
            sub = await self.client.v1.subscriptions.retrieve_async(
                subscription_id, params={"expand": ["latest_invoice.payment_intent"]}
            )
        return subscription_state(sub.to_dict())

    async def change_plan(
        self, *, subscription_id: str, item_id: str | None, stripe_plan_id: str, idempotency_key: str
    ) -> SubscriptionState:
        if item_id is None:
            item_id = (await self.retrieve_subscription(subscription_id)).item_id
        params: Any = {"items": [{"id": item_id, "plan": stripe_plan_id}]}
        with stripe_errors():
            sub = await self.client.v1.subscriptions.update_async(
                subscription_id,
                params=params,
                options={"idempotency_key": idempotency_key},
            )
        return subscription_state(sub.to_dict())

    async def cancel_subscription(
        self, *, subscription_id: str, immediately: bool, idempotency_key: str
    ) -> SubscriptionState:
        with stripe_errors():
            if immediately:
                sub = await self.client.v1.subscriptions.cancel_async(
                    subscription_id, options={"idempotency_key": idempotency_key}
                )
            else:
                sub = await self.client.v1.subscriptions.update_async(
                    subscription_id,
                    params={"cancel_at_period_end": True},
                    options={"idempotency_key": idempotency_key},
                )
        return subscription_state(sub.to_dict())
