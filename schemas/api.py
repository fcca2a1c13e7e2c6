"""HTTP contracts of the ingress: request bodies (Create) and responses (Read)."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, ConfigDict, Field

from schemas.base import EXACTLY_INT, StrictBool, StrictInt, WireModel, examples
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
    model_config = examples({
        "userId": "u-123",
        "available": 25,
        "held": 5,
        "total": 30,
        "batches": [
            {
                "id": "6b1d1f2e-8a43-4f57-b2a5-3c51a8a4e0d2",
                "source": "PURCHASED",
                "amount": 30,
                "remaining": 30,
                "acquiredAt": "2026-11-01T10:00:00Z",
                "expiresAt": "2027-11-01T10:00:00Z"
            }
        ]
    })

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
    has_more: StrictBool = Field(
        description="True iff a further page exists (then `nextCursor` fetches it).",
    )


class CommandAppliedRead(WireModel):
    """A command the ledger applied: its id and what its type returns (a grant: the
    transaction, batch, credits, expiry and balance after; a charge: the transaction and
    balance...); the same body `GET /payment/commands/{id}` gives as `result`."""

    model_config = examples({
        "commandId": "0f8b7e7c-2f5e-4c59-9a4f-1d0f6c1f2a11",
        "transactionId": "6b1d1f2e-8a43-4f57-b2a5-3c51a8a4e0d2",
        "batchId": "9d2c4e61-0c4b-4ad9-8c10-2f5e7b1b6a33",
        "credits": 25,
        "expiresAt": "2027-12-01T00:00:00+00:00",
        "balance": {"available": 25, "held": 0, "total": 25},
    }) | ConfigDict(extra="allow")

    command_id: uuid.UUID


class CommandPendingRead(WireModel):
    """202: the ledger had not answered within PAYMENT_REPLY_TIMEOUT; the command is
    published and will be applied once. Poll `statusUrl` (also the `Location` header)."""

    model_config = examples({
        "commandId": "0f8b7e7c-2f5e-4c59-9a4f-1d0f6c1f2a11",
        "status": "pending",
        "statusUrl": "/payment/commands/0f8b7e7c-2f5e-4c59-9a4f-1d0f6c1f2a11",
    })

    command_id: uuid.UUID
    status: Literal["pending"]
    status_url: str


class CommandStatusRead(WireModel):
    command_id: uuid.UUID
    status: Literal["pending", "applied", "rejected"]
    type: str | None = None
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None
    fingerprint: str | None = Field(
        None,
        description="What the id was first used for: SHA-256 of the command's type, user and "
        "payload (`command_fingerprint` of the contracts). A publisher compares it with its "
        "own command's before taking `result` as its answer: the same id used for another "
        "command was refused (PAY012), not applied. None for records older than fingerprints.",
    )


class GrantRequest(WireModel):
    model_config = examples({
        "userId": "u-123",
        "credits": 25,
        "reason": "goodwill: booking #812 was cancelled"
    })

    user_id: UserId
    credits: Credits
    reason: Reason
    expires_at: AwareDatetime | None = None
    metadata: Metadata


class RefundRequest(WireModel):
    """A CREDIT_USAGE refund (credits back), or a CREDIT_PURCHASE refund (money back in
    Stripe, and the purchase's credits in proportion taken back)."""

    model_config = examples({
        "userId": "u-123",
        "transactionId": "6b1d1f2e-8a43-4f57-b2a5-3c51a8a4e0d2",
        "credits": 5,
        "reason": "class cancelled by the studio"
    })

    user_id: UserId
    transaction_id: uuid.UUID
    credits: Credits | None = Field(None, description="Usage refunds: default all left.")
    amount: MinorUnits | None = Field(
        None, description="Purchase refunds: money to refund, default all not yet refunded."
    )
    reason: Reason


class TransferRequest(WireModel):
    model_config = examples({
        "fromUserId": "u-123",
        "toUserId": "u-456",
        "credits": 10,
        "reason": "family account merge"
    })

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
    model_config = examples({
        "id": "pack_50",
        "name": "50 credits + 5",
        "credits": 50,
        "bonusCredits": 5,
        "price": 4500,
        "currency": "usd"
    })

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
    model_config = examples({"mode": "payment_intent", "promoCode": "WELCOME10"})

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
    model_config = examples({
        "id": "plan_basic",
        "name": "Basic",
        "price": 2900,
        "currency": "usd",
        "interval": "month",
        "creditsPerPeriod": 30,
        "rollover": "none"
    })

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


class CreditPriceRead(WireModel):
    amount: StrictInt = Field(description="Minor units of `currency` one credit is worth.")
    currency: str


class PublicConfigRead(WireModel):
    """What a frontend needs before its first call: Stripe.js's key, what is sold in
    which currencies, and what one credit is worth (for "1 credit = $1.00" displays;
    each pack's own `pricePerCredit` is what a purchase actually costs)."""

    model_config = examples({
        "stripePublishableKey": "pk_test_51ExampleOnly",
        "currencies": ["eur", "usd"],
        "creditPrice": {"amount": 100, "currency": "usd"},
    })

    stripe_publishable_key: str = Field(description="STRIPE_PUBLISHABLE_KEY, for Stripe.js.")
    currencies: list[str] = Field(
        description="Currencies of the active credit packs and membership plans, sorted."
    )
    credit_price: CreditPriceRead = Field(
        description="DEFAULT_CREDIT_PRICE in DEFAULT_CURRENCY: the reference price of a credit."
    )
