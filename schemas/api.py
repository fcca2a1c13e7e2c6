"""HTTP contracts of the ingress: request bodies (Create) and responses (Read)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field

from schemas.base import EXACTLY_INT, StrictBool, StrictInt, WireModel
from schemas.commands import Credits, Metadata, Reason, UserId

MinorUnits = Annotated[
    int, Field(gt=0, le=100_000_000, description="Money in minor units."), EXACTLY_INT
]


class TransactionType(StrEnum):
    """Ledger transaction types (the seed's six plus what holds, promos and admins need)."""

    CREDIT_PURCHASE = "CREDIT_PURCHASE"
    MEMBERSHIP_PAYMENT = "MEMBERSHIP_PAYMENT"
    MEMBERSHIP_ROLLOVER = "MEMBERSHIP_ROLLOVER"
    CREDIT_USAGE = "CREDIT_USAGE"
    CREDIT_REFUND = "CREDIT_REFUND"
    CREDIT_TRANSFER = "CREDIT_TRANSFER"
    CREDIT_EXPIRY = "CREDIT_EXPIRY"
    PROMO_BONUS = "PROMO_BONUS"
    CREDIT_HOLD = "CREDIT_HOLD"
    CREDIT_RELEASE = "CREDIT_RELEASE"
    ADJUSTMENT = "ADJUSTMENT"
    PURCHASE_REVERSAL = "PURCHASE_REVERSAL"


class ErrorBody(WireModel):
    code: str = Field(examples=["PAY001"])
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class BatchRead(WireModel):
    id: uuid.UUID
    source: str = Field(examples=["PURCHASED"])
    amount: StrictInt
    remaining: StrictInt
    acquired_at: datetime
    expires_at: datetime


class BalanceRead(WireModel):
    user_id: str
    available: StrictInt = Field(description="Spendable now.")
    held: StrictInt = Field(description="Reserved by open holds.")
    total: StrictInt
    batches: list[BatchRead] = Field(description="Open batches in the order they are spent.")


class TransactionRead(WireModel):
    """The seed's transaction record, seen from one user's account."""

    id: uuid.UUID
    user_id: str
    type: str
    amount: StrictInt | None = Field(None, description="Money in minor units, where money moved.")
    currency: str | None = None
    credits: StrictInt = Field(description="Change of the user's available credits (signed).")
    held_credits: StrictInt = Field(description="Change of the user's held credits (signed).")
    status: str
    stripe_payment_intent_id: str | None = None
    reference: str | None = None
    related_transaction_id: uuid.UUID | None = None
    metadata: dict[str, Any]
    created_at: datetime
    balance_after: StrictInt = Field(description="Available credits after this transaction.")
    held_after: StrictInt


class HistoryPage(WireModel):
    items: list[TransactionRead]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")


class CommandStatusRead(WireModel):
    command_id: uuid.UUID
    status: Literal["pending", "applied", "rejected"]
    type: str | None = None
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None


class GrantRequest(WireModel):
    user_id: UserId
    credits: Credits
    reason: Reason
    expires_at: AwareDatetime | None = None
    metadata: Metadata


class RefundRequest(WireModel):
    """A CREDIT_USAGE refund (credits back), or a CREDIT_PURCHASE refund (money back in
    Stripe, and the purchase's credits in proportion taken back)."""

    user_id: UserId
    transaction_id: uuid.UUID
    credits: Credits | None = Field(None, description="Usage refunds: default all left.")
    amount: MinorUnits | None = Field(
        None, description="Purchase refunds: money to refund, default all not yet refunded."
    )
    reason: Reason


class TransferRequest(WireModel):
    from_user_id: UserId
    to_user_id: UserId
    credits: Credits
    reason: Reason


PackId = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$", examples=["pack_50"])]
Currency = Annotated[str, Field(pattern=r"^[a-z]{3}$", examples=["usd"])]


class PackRead(WireModel):
    id: str
    name: str
    credits: StrictInt
    bonus_credits: StrictInt
    list_price: StrictInt | None = Field(None, description="Before the promo discount.")
    discount: StrictInt = Field(0, description="Minor units off (promo code).")
    promo_bonus_credits: StrictInt = Field(0, description="Extra credits of a bonus_credits code.")
    promo_code: str | None = None
    price: StrictInt = Field(description="Minor units of `currency`.")
    currency: str
    price_per_credit: StrictInt = Field(description="Minor units per credit (bonus included), floor.")
    active: StrictBool


class PackCreate(WireModel):
    id: PackId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    credits: Credits
    bonus_credits: Annotated[int, Field(ge=0, le=1_000_000), EXACTLY_INT] = 0
    price: MinorUnits
    currency: Currency = "usd"


class PackUpdate(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    credits: Credits | None = None
    bonus_credits: Annotated[int, Field(ge=0, le=1_000_000), EXACTLY_INT] | None = None
    price: MinorUnits | None = None
    currency: Currency | None = None
    active: StrictBool | None = None


class PurchaseRequest(WireModel):
    mode: Literal["payment_intent", "checkout"] = Field(
        "payment_intent", description="checkout: a hosted Stripe Checkout page instead."
    )
    payment_method_id: Annotated[str, Field(max_length=255)] | None = Field(
        None, description="A saved payment method to attach; the frontend confirms the intent."
    )
    promo_code: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="Apply a code now (or pass the redemptionId of an earlier apply)."
    )
    redemption_id: uuid.UUID | None = Field(None, description="From POST /promo-codes/apply.")


class PurchaseRead(WireModel):
    purchase_id: uuid.UUID
    pack_id: str
    mode: str
    payment_intent_id: str | None = None
    client_secret: str | None = Field(
        None, description="For Stripe.js confirmCardPayment; never logged."
    )
    checkout_session_id: str | None = None
    url: str | None = Field(None, description="The Checkout page (mode checkout).")
    status: str
    amount: StrictInt
    currency: str
    credits: StrictInt
    bonus_credits: StrictInt
    list_price: StrictInt | None = Field(None, description="Before the promo discount.")
    discount: StrictInt = Field(0, description="Minor units off (promo code).")
    promo_bonus_credits: StrictInt = Field(0, description="Extra credits of a bonus_credits code.")
    promo_code: str | None = None


PlanId = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$", examples=["plan_monthly"])]
Rollover = Annotated[
    str,
    Field(
        pattern=r"^(none|one_cycle|capped:[1-9][0-9]{0,8})$",
        description="none: credits expire at period end; capped:N: up to N unused credits "
        "carry into the next period, then expire; one_cycle: they live one more period.",
        examples=["none", "capped:10", "one_cycle"],
    ),
]
Interval = Literal["day", "week", "month", "year"]


class PlanRead(WireModel):
    id: str
    name: str
    price: StrictInt = Field(description="Minor units of `currency` per period.")
    currency: str
    interval: str
    interval_count: StrictInt
    credits_per_period: StrictInt
    rollover: str
    trial_days: StrictInt
    trial_credits: StrictInt = Field(description="Credits of the trial period (a batch of its own).")
    active: StrictBool


class PlanCreate(WireModel):
    id: PlanId
    name: Annotated[str, Field(min_length=1, max_length=200)]
    price: MinorUnits
    currency: Currency = "usd"
    interval: Interval = "month"
    interval_count: Annotated[int, Field(ge=1, le=12), EXACTLY_INT] = 1
    credits_per_period: Credits
    rollover: Rollover = "none"
    trial_days: Annotated[int, Field(ge=0, le=730), EXACTLY_INT] = 0
    trial_credits: Annotated[int, Field(ge=0, le=1_000_000), EXACTLY_INT] = 0


class PlanUpdate(WireModel):
    """Price and interval changes make a new Stripe plan; running subscriptions keep theirs."""

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    price: MinorUnits | None = None
    currency: Currency | None = None
    interval: Interval | None = None
    interval_count: Annotated[int, Field(ge=1, le=12), EXACTLY_INT] | None = None
    credits_per_period: Credits | None = None
    rollover: Rollover | None = None
    trial_days: Annotated[int, Field(ge=0, le=730), EXACTLY_INT] | None = None
    trial_credits: Annotated[int, Field(ge=0, le=1_000_000), EXACTLY_INT] | None = None
    active: StrictBool | None = None


class SubscribeRequest(WireModel):
    payment_method_id: Annotated[str, Field(max_length=255)] | None = Field(
        None, description="A payment method to attach and make the customer's default."
    )
    change: StrictBool = Field(
        False, description="Switch the active membership to this plan (Stripe prorates)."
    )
    promo_code: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        None, description="A free_trial code (or the redemptionId of an earlier apply)."
    )
    redemption_id: uuid.UUID | None = None


class CancelRequest(WireModel):
    immediately: StrictBool = Field(
        False, description="End now instead of at the end of the paid period."
    )


class MembershipRead(WireModel):
    membership_id: uuid.UUID
    user_id: str
    plan_id: str
    plan_name: str
    status: str = Field(examples=["active"])
    subscription_id: str | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: StrictBool
    canceled_at: datetime | None = None
    credits_this_period: StrictInt = Field(description="Credits granted for the current period.")
    client_secret: str | None = Field(
        None, description="Subscribe only: confirm the first invoice's PaymentIntent with it."
    )
