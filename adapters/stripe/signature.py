"""The `Stripe-Signature` check: only a body Stripe signed with our secret becomes an event."""

from typing import Any

import stripe


def verify_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event if `Stripe-Signature` is valid for the raw body (300 s tolerance).

    Raises stripe.SignatureVerificationError or ValueError (not JSON).
    """
    if not signature:
        raise stripe.SignatureVerificationError("no Stripe-Signature header", None)
    event = stripe.Webhook.construct_event(payload, signature, secret, tolerance=300)
    data: dict[str, Any] = event.to_dict()
    return data
