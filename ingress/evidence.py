"""What a command built from an HTTP request rests on (see services/evidence/zones.py).

The ingress names the evidence itself, from what it knows: a Stripe-derived command it
builds over HTTP (a refund, a membership change) follows a Stripe API call it just made
with the secret key; any other payment-zone command is an admin's request, and only an
admin's. A service token that reaches a route building one is refused here, before
anything is recorded or published (the route guards are the first layer, this the
second, the worker's evidence check the third).
"""

from typing import Any

from litestar import Request

from ingress.auth import Principal
from schemas.commands import CommandEnvelope
from services.errors import Forbidden
from services.evidence.zones import ADMIN, EVIDENCE_KINDS, STRIPE, Evidence


def request_evidence(
    request: Request[Any, Any, Any], principal: Principal, command: CommandEnvelope
) -> Evidence | None:
    """The evidence of `command`, None for a public-zone command (it needs none)."""
    kind = command.type  # type: ignore[attr-defined]
    kinds = EVIDENCE_KINDS.get(kind)
    if kinds is None:
        return None
    if kinds <= STRIPE:
        payload = getattr(command, "payload", None)
        stripe_object = getattr(payload, "payment_intent_id", None) or getattr(
            payload, "subscription_id", None
        )
        if not stripe_object:
            raise Forbidden(f"{kind} rests on a Stripe object and none is named", type=kind)
        return Evidence("stripe_api", str(stripe_object), principal.subject)
    if "admin" not in principal.roles or not kinds & ADMIN:
        raise Forbidden(f"{kind} needs an admin's request", type=kind)
    key = request.headers.get("idempotency-key") or "-"
    reference = f"{request.method} {request.url.path} key={key} command={command.id}"
    return Evidence("admin_request", reference, principal.subject)
