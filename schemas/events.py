"""Events on `payment.events`: facts in the past tense, published through the outbox.

Consumers must dedupe by `id`: the relay delivers at least once (a crash between
publish and mark-sent repeats a row). Per user (the message key) order is the
order in which the ledger committed.
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, TypeAdapter, model_validator

from schemas.base import EXACTLY_INT, SchemaVersion, StrictBool, StrictInt, WireModel


def _now() -> datetime:
    return datetime.now(UTC)


class EventEnvelope(WireModel):
    id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Event id: dedupe on it.")
    schema_version: SchemaVersion = 1
    occurred_at: datetime = Field(default_factory=_now)
    user_id: str
    correlation_id: uuid.UUID | None = None
    source: str = "pika-payment"
    command_id: uuid.UUID | None = Field(None, description="Command that caused the event.")


class BalanceChangedPayload(WireModel):
    available: StrictInt = Field(description="Spendable credits after the change.")
    held: StrictInt = Field(description="Credits reserved by open holds after the change.")
    total: StrictInt = Field(description="available + held.")
    delta: StrictInt = Field(description="Change of available credits.")
    held_delta: StrictInt = Field(0, description="Change of held credits.")
    transaction_id: uuid.UUID
    transaction_type: str


class BalanceChanged(EventEnvelope):
    type: Literal["balance.changed"] = "balance.changed"
    payload: BalanceChangedPayload


class LedgerFactPayload(WireModel):
    """What a ledger transaction did, from the user's point of view."""

    transaction_id: uuid.UUID
    transaction_type: str
    credits: StrictInt = Field(description="Credits moved (positive).")
    reference: str | None = None
    hold_id: uuid.UUID | None = None
    batches: list[dict[str, Any]] = Field(
        default_factory=list, description="Batches touched: batchId, credits, expiresAt."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)


class CreditsGranted(EventEnvelope):
    type: Literal["credits.granted"] = "credits.granted"
    payload: LedgerFactPayload


class CreditsCharged(EventEnvelope):
    type: Literal["credits.charged"] = "credits.charged"
    payload: LedgerFactPayload


class CreditsHeld(EventEnvelope):
    type: Literal["credits.held"] = "credits.held"
    payload: LedgerFactPayload


class CreditsReleased(EventEnvelope):
    type: Literal["credits.released"] = "credits.released"
    payload: LedgerFactPayload


class CreditsRefunded(EventEnvelope):
    type: Literal["credits.refunded"] = "credits.refunded"
    payload: LedgerFactPayload


class CreditsTransferred(EventEnvelope):
    type: Literal["credits.transferred"] = "credits.transferred"
    payload: LedgerFactPayload


class CreditsRevoked(EventEnvelope):
    """Credits taken back because the money for them was refunded in Stripe."""

    type: Literal["credits.revoked"] = "credits.revoked"
    payload: LedgerFactPayload


class CreditsExpired(EventEnvelope):
    type: Literal["credits.expired"] = "credits.expired"
    payload: LedgerFactPayload


class CreditsRolledOver(EventEnvelope):
    """Unused membership credits carried into the next period (a new batch, new expiry).

    The balance does not change, so no `balance.changed` follows this fact.
    """

    type: Literal["credits.rolled_over"] = "credits.rolled_over"
    payload: LedgerFactPayload


class PaymentPayload(WireModel):
    """A payment of a credit pack (purchase and pack set) or of a membership period
    (membership, plan and invoice set)."""

    purchase_id: uuid.UUID | None = None
    refunded: StrictInt = Field(0, description="Minor units refunded so far.")
    pack_id: str | None = None
    payment_intent_id: str | None = None
    membership_id: uuid.UUID | None = None
    plan_id: str | None = None
    plan_name: str | None = None
    invoice_id: str | None = None
    email: str | None = Field(None, description="Where a dunning notice goes, if known.")
    amount: StrictInt = Field(description="Minor units.")
    currency: str
    credits: StrictInt
    bonus_credits: StrictInt = 0
    code: str | None = Field(None, description="PAY002 when the payment failed.")
    failure_code: str | None = None
    attempt: Annotated[int, Field(ge=1), EXACTLY_INT] | None = Field(
        None, description="Which collection attempt failed (renewal dunning); None: one-off."
    )


class PaymentSucceeded(EventEnvelope):
    type: Literal["payment.succeeded"] = "payment.succeeded"
    payload: PaymentPayload


class PaymentRefunded(EventEnvelope):
    type: Literal["payment.refunded"] = "payment.refunded"
    payload: PaymentPayload


class FraudFlagPayload(WireModel):
    reason: str = Field(examples=["refund_of_spent_credits"], description="The rule that fired.")
    severity: Literal["low", "medium", "high"]
    flag_id: uuid.UUID | None = Field(None, description="The fraud_flags row an admin resolves.")
    purchase_id: uuid.UUID | None = None
    payment_intent_id: str | None = None
    shortfall_credits: StrictInt = 0
    frozen_credits: StrictInt = Field(0, description="Purchased credits held until an admin decides.")
    details: dict[str, Any] = Field(default_factory=dict, description="Counts and thresholds.")


class FraudFlagged(EventEnvelope):
    """Needs a human: e.g. money refunded for credits already spent."""

    type: Literal["fraud.flagged"] = "fraud.flagged"
    payload: FraudFlagPayload


class FraudResolvedPayload(WireModel):
    flag_id: uuid.UUID
    reason: str
    resolution: Literal["cleared", "confirmed"]
    released_credits: StrictInt = Field(0, description="Frozen credits given back (cleared).")
    revoked_credits: StrictInt = Field(0, description="Frozen credits taken back (confirmed).")


class FraudResolved(EventEnvelope):
    """An admin decided a fraud flag."""

    type: Literal["fraud.resolved"] = "fraud.resolved"
    payload: FraudResolvedPayload


class PaymentFailed(EventEnvelope):
    type: Literal["payment.failed"] = "payment.failed"
    payload: PaymentPayload


class ReceiptPayload(WireModel):
    """What a receipt shows; never card data or Stripe objects."""

    kind: Literal["purchase"] = "purchase"
    purchase_id: uuid.UUID
    pack_id: str
    pack_name: str
    credits: StrictInt
    bonus_credits: StrictInt
    amount: StrictInt
    currency: str
    email: str | None = None
    balance_after: StrictInt


class ReceiptRequested(EventEnvelope):
    type: Literal["receipt.requested"] = "receipt.requested"
    payload: ReceiptPayload


class MembershipPayload(WireModel):
    """What a membership receipt shows (issue #4 emits it); never card data or Stripe objects."""

    membership_id: str
    plan_id: str
    plan_name: str
    period_start: AwareDatetime = Field(description="Start of the paid period.")
    period_end: AwareDatetime = Field(description="End of the paid period (exclusive).")
    credits_granted: Annotated[int, Field(ge=0), EXACTLY_INT] = Field(
        description="Credits the period granted."
    )
    amount: Annotated[int, Field(ge=0), EXACTLY_INT] = Field(
        description="Minor units paid for the period."
    )
    currency: str
    email: str | None = Field(None, description="The user's email, if known.")
    balance_after: StrictInt | None = Field(None, description="Available credits after the grant.")

    @model_validator(mode="after")
    def _period_in_order(self) -> "MembershipPayload":
        if self.period_end <= self.period_start:
            raise ValueError("periodEnd must be after periodStart")
        return self


class MembershipCanceledPayload(WireModel):
    membership_id: uuid.UUID
    plan_id: str
    plan_name: str
    canceled_at: AwareDatetime
    access_until: AwareDatetime | None = Field(
        None, description="End of the last paid period; granted credits keep their own expiry."
    )


class MembershipCanceled(EventEnvelope):
    """A membership ended (at period end, immediately, or after failed payments)."""

    type: Literal["membership.canceled"] = "membership.canceled"
    payload: MembershipCanceledPayload


class MembershipStatePayload(WireModel):
    membership_id: uuid.UUID
    plan_id: str
    status: str = Field(examples=["past_due"])
    cancel_at_period_end: StrictBool
    current_period_end: AwareDatetime | None = None


class MembershipUpdated(EventEnvelope):
    """Stripe's state of a membership changed (status, plan, period or cancellation)."""

    type: Literal["membership.updated"] = "membership.updated"
    payload: MembershipStatePayload


class MembershipActivated(EventEnvelope):
    """A membership started: its first period is paid and its credits granted."""

    type: Literal["membership.activated"] = "membership.activated"
    payload: MembershipPayload


class MembershipRenewed(EventEnvelope):
    """A membership renewed: the next period is paid and its credits granted."""

    type: Literal["membership.renewed"] = "membership.renewed"
    payload: MembershipPayload


class ExpiringBatch(WireModel):
    batch_id: uuid.UUID
    remaining: StrictInt = Field(description="Credits left in the batch when the reminder was made.")
    expires_at: datetime


class CreditsExpiringPayload(WireModel):
    """A reminder, not a ledger change: published by `pika-payment remind`, not the outbox."""

    batches: list[ExpiringBatch] = Field(min_length=1)
    credits: StrictInt = Field(description="Sum of `remaining` over the batches.")
    within_days: StrictInt = Field(description="The reminder window (EXPIRY_REMINDER_DAYS).")
    email: str | None = Field(None, description="The user's latest purchase email, if known.")


class CreditsExpiring(EventEnvelope):
    """Credits of these batches expire soon. The id is a UUIDv5 of user + batch ids."""

    type: Literal["credits.expiring"] = "credits.expiring"
    payload: CreditsExpiringPayload


REJECTABLE = Literal[
    "credits.charge.rejected",
    "credits.hold.rejected",
    "credits.capture.rejected",
    "credits.release.rejected",
    "credits.refund.rejected",
    "credits.grant.rejected",
    "credits.transfer.rejected",
    "credits.expire.rejected",
    "purchase.confirm.rejected",
    "purchase.fail.rejected",
    "purchase.revoke.rejected",
    "purchase.freeze.rejected",
    "purchase.settle_dispute.rejected",
    "membership.grant_period.rejected",
    "membership.fail_payment.rejected",
    "membership.sync.rejected",
    "fraud.record_card.rejected",
    "fraud.resolve.rejected",
    "receipt.resend.rejected",
]
"""Every command type's rejection event: a rejected command whose `.rejected` type were
missing here could not announce its rejection, and its batch would fail again on every
redelivery (tests/test_rejections.py keeps this list complete)."""


class RejectedPayload(WireModel):
    code: str = Field(description="PAY code, e.g. PAY001.", examples=["PAY001"])
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class CommandRejected(EventEnvelope):
    """`<command type>.rejected`: the command was valid but the ledger refused it."""

    type: REJECTABLE
    payload: RejectedPayload


Event = Annotated[
    BalanceChanged
    | CreditsGranted
    | CreditsCharged
    | CreditsHeld
    | CreditsReleased
    | CreditsRefunded
    | CreditsTransferred
    | CreditsExpired
    | CreditsRevoked
    | CreditsRolledOver
    | PaymentSucceeded
    | PaymentRefunded
    | PaymentFailed
    | FraudFlagged
    | FraudResolved
    | ReceiptRequested
    | MembershipActivated
    | MembershipRenewed
    | MembershipCanceled
    | MembershipUpdated
    | CreditsExpiring
    | CommandRejected,
    Field(discriminator="type"),
]
EVENT_MODELS: tuple[type[EventEnvelope], ...] = (
    BalanceChanged,
    CreditsGranted,
    CreditsCharged,
    CreditsHeld,
    CreditsReleased,
    CreditsRefunded,
    CreditsTransferred,
    CreditsExpired,
    CreditsRevoked,
    CreditsRolledOver,
    PaymentSucceeded,
    PaymentRefunded,
    PaymentFailed,
    FraudFlagged,
    FraudResolved,
    ReceiptRequested,
    MembershipActivated,
    MembershipRenewed,
    MembershipCanceled,
    MembershipUpdated,
    CreditsExpiring,
    CommandRejected,
)
event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
FACT_EVENT_BY_TYPE: dict[str, type[EventEnvelope]] = {
    "credits.granted": CreditsGranted,
    "credits.charged": CreditsCharged,
    "credits.held": CreditsHeld,
    "credits.released": CreditsReleased,
    "credits.refunded": CreditsRefunded,
    "credits.transferred": CreditsTransferred,
    "credits.expired": CreditsExpired,
    "credits.revoked": CreditsRevoked,
    "credits.rolled_over": CreditsRolledOver,
}
