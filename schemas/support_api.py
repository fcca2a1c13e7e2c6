"""HTTP contracts of the support console's read side (admin): find a customer, their
page, the explanation of their balance and the story of one batch.

Credits and money are integers (money in minor units); every list is in the order a
support agent reads it (batches in spend order, everything else newest first).
"""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from schemas.base import StrictBool, StrictInt, WireModel, examples
from schemas.fraud_api import FraudFlagRead

MatchedBy = Literal["userId", "email", "stripeCustomerId", "paymentIntentId", "transactionId"]

USER = "u-123"
BATCH = "6b1d1f2e-8a43-4f57-b2a5-3c51a8a4e0d2"
GRANT_TX = "0f8b7e7c-2f5e-4c59-9a4f-1d0f6c1f2a11"
CHARGE_TX = "9d2c4e61-0c4b-4ad9-8c10-2f5e7b1b6a33"
PURCHASE = "3c1e2b7a-5d4f-4e1a-9b8c-7a6d5e4f3a21"


class CustomerMatch(WireModel):
    user_id: str
    matched_by: MatchedBy = Field(description="Which key of the query found this user.")
    detail: str = Field(description="Where it matched, e.g. `purchases.email`.")


class CustomerSearchRead(WireModel):
    """Every user the query names exactly (a user id, an email, a Stripe customer id, a
    PaymentIntent id or a transaction id); empty when none."""

    model_config = examples({
        "matches": [
            {"userId": USER, "matchedBy": "email", "detail": "purchases.email"},
        ]
    })

    matches: list[CustomerMatch]


class CustomerBalanceRead(WireModel):
    available: StrictInt = Field(description="Spendable now.")
    held: StrictInt = Field(description="Reserved by open holds and freezes.")
    total: StrictInt


class CustomerBatchRead(WireModel):
    id: uuid.UUID
    source: str = Field(examples=["PURCHASED"])
    amount: StrictInt = Field(description="Credits the batch was created with.")
    remaining: StrictInt
    acquired_at: datetime
    expires_at: datetime
    transaction_id: uuid.UUID = Field(description="The transaction that created the batch.")
    purchase_id: uuid.UUID | None = Field(None, description="The purchase whose money is behind it.")


class CustomerHoldRead(WireModel):
    id: uuid.UUID
    kind: Literal["booking", "freeze"] = Field(
        description="booking: `credits.hold`; freeze: a dispute or a fraud flag.")
    reference: str
    credits: StrictInt
    created_at: datetime
    expires_at: datetime
    transaction_id: uuid.UUID


class CustomerMembershipRead(WireModel):
    membership_id: uuid.UUID
    plan_id: str
    plan_name: str
    status: str = Field(examples=["active"])
    subscription_id: str | None = None
    stripe_customer_id: str | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: StrictBool
    canceled_at: datetime | None = None
    credits_per_period: StrictInt
    credits_this_period: StrictInt = Field(description="Credits granted for the latest period.")
    rollover: str = Field(description="The plan's policy: none, one_cycle or capped:N.")
    trial_days: StrictInt
    created_at: datetime


class PurchaseRefundRead(WireModel):
    amount: StrictInt = Field(description="Money refunded, minor units of `currency`.")
    currency: str
    created_at: datetime


class PurchaseDisputeRead(WireModel):
    dispute_id: str
    status: Literal["open", "won", "lost", "warning_closed"]
    frozen_credits: StrictInt
    opened_at: datetime
    closed_at: datetime | None = None


class CustomerPurchaseRead(WireModel):
    purchase_id: uuid.UUID
    pack_id: str
    pack_name: str
    credits: StrictInt
    bonus_credits: StrictInt
    promo_bonus_credits: StrictInt
    amount: StrictInt = Field(description="Money paid, minor units of `currency`.")
    currency: str
    list_amount: StrictInt | None = Field(None, description="Before the promo discount.")
    discount: StrictInt
    promo_code: str | None = None
    status: str = Field(examples=["succeeded"])
    payment_intent_id: str | None = None
    checkout_session_id: str | None = None
    failure_code: str | None = None
    grant_transaction_id: uuid.UUID | None = None
    refunded_amount: StrictInt = Field(description="Money refunded so far, minor units.")
    owed_credits: StrictInt = Field(description="Credits the purchase must give back.")
    clawed_credits: StrictInt = Field(description="Of those, taken back so far.")
    shortfall_credits: StrictInt = Field(description="Still owed: already spent.")
    refunds: list[PurchaseRefundRead] = Field(description="Oldest first.")
    disputes: list[PurchaseDisputeRead] = Field(description="Oldest first.")
    created_at: datetime


class PromoRedemptionRead(WireModel):
    id: uuid.UUID
    code: str
    kind: str
    status: Literal["reserved", "redeemed", "released"]
    target_kind: str
    target_id: str
    discount: StrictInt = Field(description="Minor units off.")
    currency: str | None = None
    bonus_credits: StrictInt
    trial_days: StrictInt
    purchase_id: uuid.UUID | None = None
    membership_id: uuid.UUID | None = None
    created_at: datetime
    redeemed_at: datetime | None = None
    released_at: datetime | None = None
    release_reason: str | None = None


class NotificationRead(WireModel):
    event_id: uuid.UUID = Field(description="The event the email was about.")
    template: str = Field(examples=["receipt"])
    status: Literal["pending", "sent", "skipped", "failed"]
    recipient: str | None = None
    attempts: StrictInt
    created_at: datetime
    sent_at: datetime | None = None


class CustomerRead(WireModel):
    """Everything about one customer on one page. Lists other than `batches` and
    `holds` are newest first and capped at the newest 100."""

    model_config = examples({
        "userId": USER,
        "email": "ana@example.com",
        "stripeCustomerId": "cus_Example123",
        "balance": {"available": 18, "held": 5, "total": 23},
        "batches": [{
            "id": BATCH, "source": "PURCHASED", "amount": 20, "remaining": 15,
            "acquiredAt": "2026-11-01T10:00:00Z", "expiresAt": "2027-11-01T10:00:00Z",
            "transactionId": GRANT_TX, "purchaseId": PURCHASE,
        }],
        "holds": [{
            "id": "5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "kind": "booking",
            "reference": "booking-812", "credits": 5, "createdAt": "2026-11-20T09:00:00Z",
            "expiresAt": "2026-11-20T09:15:00Z", "transactionId": CHARGE_TX,
        }],
        "membership": None,
        "purchases": [{
            "purchaseId": PURCHASE, "packId": "pack_20", "packName": "20 credits + 3",
            "credits": 20, "bonusCredits": 3, "promoBonusCredits": 0, "amount": 1800,
            "currency": "usd", "discount": 0, "status": "succeeded",
            "paymentIntentId": "pi_Example123", "grantTransactionId": GRANT_TX,
            "refundedAmount": 0, "owedCredits": 0, "clawedCredits": 0, "shortfallCredits": 0,
            "refunds": [], "disputes": [], "createdAt": "2026-11-01T09:59:00Z",
        }],
        "promoRedemptions": [],
        "fraudFlags": [],
        "notifications": [{
            "eventId": "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d", "template": "receipt",
            "status": "sent", "recipient": "ana@example.com", "attempts": 1,
            "createdAt": "2026-11-01T10:00:01Z", "sentAt": "2026-11-01T10:00:02Z",
        }],
    })

    user_id: str
    email: str | None = Field(None, description="The newest address the service has for them.")
    stripe_customer_id: str | None = None
    balance: CustomerBalanceRead
    batches: list[CustomerBatchRead] = Field(description="Open batches in the order they are spent.")
    holds: list[CustomerHoldRead] = Field(description="Open holds and freezes, oldest first.")
    membership: CustomerMembershipRead | None = Field(
        None, description="The live membership, else the latest one.")
    purchases: list[CustomerPurchaseRead]
    promo_redemptions: list[PromoRedemptionRead]
    fraud_flags: list[FraudFlagRead]
    notifications: list[NotificationRead] = Field(description="Emails sent (or tried) to them.")


class PostingRead(WireModel):
    """One leg of a transaction: a user's or a system account's bucket moved by `amount`."""

    account: str = Field(description="The user id, or the system account's code.")
    account_kind: Literal["user", "system"]
    bucket: Literal["available", "held"]
    amount: StrictInt = Field(description="Signed: the legs of a transaction sum to zero.")


class AllocationRead(WireModel):
    """What a transaction took from (negative) or gave to (positive) one batch."""

    batch_id: uuid.UUID
    batch_user_id: str
    credits: StrictInt = Field(description="Signed, from the batch's point of view.")
    batch_source: str
    batch_expires_at: datetime
    purchase_id: uuid.UUID | None = None
    origin_batch_id: uuid.UUID | None = Field(
        None, description="A return: the batch the credits were first taken from.")
    debit_transaction_id: uuid.UUID | None = Field(
        None, description="A return: the hold or charge it gives back.")


class ExplanationEntryRead(WireModel):
    id: uuid.UUID
    type: str = Field(examples=["CREDIT_USAGE"])
    status: str
    user_id: str = Field(description="Whose transaction it is (a transfer's sender).")
    counterparty_user_id: str | None = None
    credits: StrictInt = Field(description="The transaction's size (positive).")
    amount: StrictInt | None = Field(None, description="Money in minor units, where money moved.")
    currency: str | None = None
    stripe_payment_intent_id: str | None = None
    reference: str | None = None
    related_transaction_id: uuid.UUID | None = None
    hold_id: uuid.UUID | None = None
    metadata: dict[str, Any]
    created_at: datetime
    available_change: StrictInt = Field(description="Change of this customer's available credits.")
    held_change: StrictInt = Field(description="Change of this customer's held credits.")
    balance_after: StrictInt = Field(description="This customer's available credits after it.")
    held_after: StrictInt
    postings: list[PostingRead] = Field(description="Every leg, system accounts included.")
    allocations: list[AllocationRead]


class ExplanationPage(WireModel):
    """The customer's transactions, newest first, each with its postings and batch
    allocations and the running balance after it: the first entry of the first page
    ends at `balance`."""

    model_config = examples({
        "entries": [{
            "id": CHARGE_TX, "type": "CREDIT_USAGE", "status": "COMPLETED", "userId": USER,
            "credits": 5, "reference": "booking-812", "metadata": {},
            "createdAt": "2026-11-20T09:00:00Z", "availableChange": -5, "heldChange": 0,
            "balanceAfter": 15, "heldAfter": 0,
            "postings": [
                {"account": USER, "accountKind": "user", "bucket": "available", "amount": -5},
                {"account": "bookings", "accountKind": "system", "bucket": "available",
                 "amount": 5},
            ],
            "allocations": [{
                "batchId": BATCH, "batchUserId": USER, "credits": -5,
                "batchSource": "PURCHASED", "batchExpiresAt": "2027-11-01T10:00:00Z",
                "purchaseId": PURCHASE,
            }],
        }],
        "nextCursor": None,
        "hasMore": False,
        "balance": {"available": 15, "held": 0, "total": 15},
    })

    entries: list[ExplanationEntryRead]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")
    has_more: StrictBool = Field(
        description="True iff a further page exists (then `nextCursor` fetches it).",
    )
    balance: CustomerBalanceRead = Field(description="The account's balance now.")


class BatchDetailRead(WireModel):
    id: uuid.UUID
    user_id: str
    source: str
    status: Literal["open", "expired"]
    amount: StrictInt
    remaining: StrictInt
    acquired_at: datetime
    expires_at: datetime
    transaction_id: uuid.UUID = Field(description="The transaction that created the batch.")
    transaction_type: str
    purchase_id: uuid.UUID | None = None
    source_ref: str | None = Field(None, description="The command (or debit) it came from.")


class BatchMovementRead(WireModel):
    transaction_id: uuid.UUID
    transaction_type: str = Field(examples=["CREDIT_USAGE"])
    credits: StrictInt = Field(description="Signed: taken out (negative) or given back.")
    reference: str | None = None
    created_at: datetime
    debit_transaction_id: uuid.UUID | None = Field(
        None, description="A return: the hold or charge it gives back.")


class ReturnedElsewhereRead(WireModel):
    """Credits first taken from this batch that came back after it had expired, into a
    fresh REFUNDED batch (they do not change this batch's `remaining`)."""

    transaction_id: uuid.UUID
    transaction_type: str
    batch_id: uuid.UUID
    credits: StrictInt
    created_at: datetime


class BatchStoryRead(WireModel):
    """A batch and every movement against it, oldest first: `amount` plus the sum of
    the movements' `credits` is `remaining`."""

    model_config = examples({
        "batch": {
            "id": BATCH, "userId": USER, "source": "PURCHASED", "status": "open", "amount": 20,
            "remaining": 15, "acquiredAt": "2026-11-01T10:00:00Z",
            "expiresAt": "2027-11-01T10:00:00Z", "transactionId": GRANT_TX,
            "transactionType": "CREDIT_PURCHASE", "purchaseId": PURCHASE,
        },
        "movements": [{
            "transactionId": CHARGE_TX, "transactionType": "CREDIT_USAGE", "credits": -5,
            "reference": "booking-812", "createdAt": "2026-11-20T09:00:00Z",
        }],
        "returnedElsewhere": [],
    })

    batch: BatchDetailRead
    movements: list[BatchMovementRead] = Field(description="Oldest first, creation excluded.")
    returned_elsewhere: list[ReturnedElsewhereRead]
