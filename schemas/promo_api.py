"""HTTP contracts of promo codes: admin changes, validate / apply, stats."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas.api import Currency, MinorUnits, PackId, PlanId
from schemas.base import EXACTLY_INT, StrictBool, StrictInt, WireModel, examples
from schemas.commands import UserId

PromoKind = Literal["percentage", "fixed_amount", "bonus_credits", "free_trial"]
CodeText = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{3,40}$", examples=["SUMMER10"])]
KIND_FIELDS = {
    "percentage": ("percent_off",),
    "fixed_amount": ("amount_off", "currency"),
    "bonus_credits": ("bonus_credits",),
    "free_trial": ("trial_days",),
}
VALUE_FIELDS = ("percent_off", "amount_off", "currency", "bonus_credits", "bonus_expiry_days",
                "trial_days")


class PromoLimits(WireModel):
    usage_limit: Annotated[int, Field(gt=0, le=10_000_000), EXACTLY_INT] | None = Field(
        None, description="Uses in all (none: unlimited).")
    per_user_limit: Annotated[int, Field(gt=0, le=1000), EXACTLY_INT] = Field(1, description="Uses per user.")
    new_customers_only: StrictBool = Field(False, description="Only users without a completed purchase.")
    allowed_users: Annotated[list[UserId], Field(max_length=1000)] | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = Field(None, description="Exclusive: refused from this second.")
    minimum_amount: MinorUnits | None = Field(None, description="Least list price it applies to.")
    pack_ids: Annotated[list[PackId], Field(max_length=200)] | None = None
    plan_ids: Annotated[list[PlanId], Field(max_length=200)] | None = None
    active: StrictBool = True

    @model_validator(mode="after")
    def _window_in_order(self) -> "PromoLimits":
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("validUntil must be after validFrom")
        return self


class PromoCodeCreate(PromoLimits):
    model_config = examples({
        "code": "WELCOME10",
        "kind": "percentage",
        "percentOff": 10,
        "usageLimit": 1000,
        "perUserLimit": 1
    })

    code: CodeText
    kind: PromoKind
    percent_off: Annotated[int, Field(ge=10, le=50), EXACTLY_INT] | None = Field(
        None, description="percentage")
    amount_off: Annotated[int, Field(ge=500, le=5000), EXACTLY_INT] | None = Field(
        None, description="fixed_amount: minor units off ($5-$50)")
    currency: Currency | None = Field(None, description="fixed_amount: currency of amountOff")
    bonus_credits: Annotated[int, Field(gt=0, le=1_000_000), EXACTLY_INT] | None = Field(
        None, description="bonus_credits: extra credits on the purchase")
    bonus_expiry_days: Annotated[int, Field(gt=0, le=3650), EXACTLY_INT] | None = Field(
        None, description="bonus_credits: their lifetime (default CREDIT_EXPIRY_DAYS)")
    trial_days: Annotated[int, Field(ge=1, le=365), EXACTLY_INT] | None = Field(
        None, description="free_trial")

    @model_validator(mode="after")
    def _kind_has_its_values(self) -> "PromoCodeCreate":
        needed = KIND_FIELDS[self.kind]
        allowed = set(needed) | ({"bonus_expiry_days"} if self.kind == "bonus_credits" else set())
        missing = [f for f in needed if getattr(self, f) is None]
        extra = [f for f in VALUE_FIELDS if f not in allowed and getattr(self, f) is not None]
        if missing or extra:
            raise ValueError(f"a {self.kind} code needs {', '.join(needed)} and nothing of "
                             f"{', '.join(f for f in VALUE_FIELDS if f not in allowed)}")
        return self


class PromoCodeUpdate(WireModel):
    """Limits, dates and the active flag; what a code gives never changes."""

    usage_limit: Annotated[int, Field(gt=0, le=10_000_000), EXACTLY_INT] | None = None
    per_user_limit: Annotated[int, Field(gt=0, le=1000), EXACTLY_INT] | None = None
    new_customers_only: StrictBool | None = None
    allowed_users: Annotated[list[UserId], Field(max_length=1000)] | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    minimum_amount: MinorUnits | None = None
    pack_ids: Annotated[list[PackId], Field(max_length=200)] | None = None
    plan_ids: Annotated[list[PlanId], Field(max_length=200)] | None = None
    active: StrictBool | None = None


class PromoCodeRead(WireModel):
    id: uuid.UUID
    code: str
    kind: str
    percent_off: StrictInt | None = None
    amount_off: StrictInt | None = None
    currency: str | None = None
    bonus_credits: StrictInt | None = None
    bonus_expiry_days: StrictInt | None = None
    trial_days: StrictInt | None = None
    usage_limit: StrictInt | None = None
    per_user_limit: StrictInt
    new_customers_only: StrictBool
    allowed_users: list[str] | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    minimum_amount: StrictInt | None = None
    pack_ids: list[str] | None = None
    plan_ids: list[str] | None = None
    active: StrictBool
    created_at: datetime
    live_uses: StrictInt | None = Field(None, description="Redeemed, or reserved and not expired.")
    redemptions: StrictInt | None = None


class PromoTarget(WireModel):
    model_config = examples({"code": "WELCOME10", "packId": "pack_50"})

    code: Annotated[str, Field(min_length=1, max_length=64)]
    pack_id: PackId | None = None
    plan_id: PlanId | None = None

    @model_validator(mode="after")
    def _one_target(self) -> "PromoTarget":
        if (self.pack_id is None) == (self.plan_id is None):
            raise ValueError("give exactly one of packId and planId")
        return self


class PromoPreviewRead(WireModel):
    valid: StrictBool = True
    code: str
    original_price: StrictInt = Field(description="Minor units before the discount.")
    discount: StrictInt
    final_price: StrictInt
    currency: str
    bonus_credits: StrictInt
    trial_days: StrictInt


class PromoApplyRead(PromoPreviewRead):
    redemption_id: uuid.UUID = Field(description="Pass as redemptionId to purchase or subscribe.")
    expires_at: datetime = Field(description="Released if no payment starts before this.")


class PromoStatsRead(WireModel):
    code_id: uuid.UUID
    code: str
    reservations: StrictInt = Field(description="Every apply, whatever became of it.")
    live_reservations: StrictInt
    redemptions: StrictInt
    released: StrictInt
    discount_given: StrictInt = Field(description="Minor units off, over redeemed purchases.")
    revenue: StrictInt = Field(description="Minor units paid for the purchases that used the code.")
    currency: str | None = None
    bonus_credits_granted: StrictInt
    bonus_credits_spent: StrictInt
    bonus_credits_clawed_back: StrictInt
