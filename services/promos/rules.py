"""Whether a code applies, and what it gives: pure, so `validate` and `apply` agree.

The checks run in a fixed order, so a refusal names the first reason a customer can
act on: unknown, not_started, expired, not_applicable, not_eligible, trial_used,
minimum_not_met, already_used, usage_limit_reached. `trial_used`: a free_trial code for
an account that already had a trial (one per user, and per card, see
`services.memberships.trials`). Money is integer minor units; a percentage
discount is rounded down (the customer never gets more off than the code says).

Which code fits what: percentage, fixed_amount and bonus_credits apply to credit packs
(one PaymentIntent each); free_trial applies to membership plans (trial days on the
Stripe subscription). One code per purchase: codes do not stack.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.errors import InvalidPromoCode

PACK_KINDS = frozenset({"percentage", "fixed_amount", "bonus_credits"})
SMALLEST_CHARGE = 50  # Stripe's minimum charge in minor units (USD and most currencies)


@dataclass(frozen=True)
class Target:
    kind: str  # "pack" | "plan"
    id: str
    price: int
    currency: str


@dataclass(frozen=True)
class Usage:
    total: int
    """Live uses of the code: redeemed, or reserved and not expired."""
    by_user: int
    user_has_purchased: bool
    user_had_trial: bool = False
    """The user has claimed a membership trial (a plan's or a free_trial code's)."""


@dataclass(frozen=True)
class Preview:
    original: int
    discount: int
    final: int
    currency: str
    bonus_credits: int
    bonus_expiry_days: int | None
    trial_days: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "original_price": self.original,
            "discount": self.discount,
            "final_price": self.final,
            "currency": self.currency,
            "bonus_credits": self.bonus_credits,
            "trial_days": self.trial_days,
        }


def refuse(reason: str, message: str, **details: Any) -> InvalidPromoCode:
    return InvalidPromoCode(message, reason=reason, **details)


def evaluate(code: dict[str, Any] | None, target: Target, usage: Usage, user_id: str,
             now: datetime) -> Preview:
    """The preview of `code` on `target` for this user now, or InvalidPromoCode (PAY003)."""
    if code is None or not code["active"]:
        raise refuse("unknown", "no such promo code")
    if code["valid_from"] is not None and now < code["valid_from"]:
        raise refuse("not_started", "the code is not valid yet", validFrom=code["valid_from"].isoformat())
    if code["valid_until"] is not None and now >= code["valid_until"]:
        raise refuse("expired", "the code has expired", validUntil=code["valid_until"].isoformat())
    fits_kind = (code["kind"] in PACK_KINDS) == (target.kind == "pack")
    listed = code["pack_ids"] if target.kind == "pack" else code["plan_ids"]
    if not fits_kind or (listed and target.id not in listed):
        raise refuse("not_applicable", f"the code does not apply to this {target.kind}",
                     target=target.id)
    if code["kind"] == "fixed_amount" and code["currency"].strip() != target.currency:
        raise refuse("not_applicable", "the code is for another currency",
                     currency=code["currency"].strip())
    allowed = code["allowed_users"]
    if (allowed and user_id not in allowed) or (code["new_customers_only"] and usage.user_has_purchased):
        raise refuse("not_eligible", "this account cannot use the code")
    if code["kind"] == "free_trial" and usage.user_had_trial:
        raise refuse("trial_used", "this account has already had a free trial")
    minimum = code["minimum_amount_minor"]
    if minimum is not None and target.price < minimum:
        raise refuse("minimum_not_met", f"the code needs a purchase of at least {minimum}",
                     minimum=minimum, price=target.price)
    if usage.by_user >= code["per_user_limit"]:
        raise refuse("already_used", "this account has used the code", limit=code["per_user_limit"])
    if code["usage_limit"] is not None and usage.total >= code["usage_limit"]:
        raise refuse("usage_limit_reached", "the code has been used up", limit=code["usage_limit"])
    discount = 0
    if code["kind"] == "percentage":
        discount = target.price * code["percent_off"] // 100
    elif code["kind"] == "fixed_amount":
        discount = code["amount_off_minor"]
    final = target.price - discount
    if target.kind == "pack" and final < SMALLEST_CHARGE:
        raise refuse("not_applicable", "the discount leaves less than the smallest charge",
                     price=target.price, discount=discount)
    return Preview(
        original=target.price,
        discount=discount,
        final=final,
        currency=target.currency,
        bonus_credits=code["bonus_credits"] or 0,
        bonus_expiry_days=code["bonus_expiry_days"],
        trial_days=code["trial_days"] or 0,
    )
