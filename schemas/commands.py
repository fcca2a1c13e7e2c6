"""Commands on `payment.commands`: imperative requests to change the ledger.

The envelope `id` is the idempotency key: a command with an id already applied
changes nothing and yields the stored result. Services that charge for a booking
should derive it deterministically (`command_id_for`), so a retried publish is harmless.
"""

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, Field, RootModel, TypeAdapter

from schemas.base import EXACTLY_INT, PLAIN_TEXT, SchemaVersion, StrictBool, WireModel

SCHEMA_VERSION = 1
Credits = Annotated[
    int, Field(gt=0, le=1_000_000_000, description="Whole credits, > 0."), EXACTLY_INT
]
NonNegative = Annotated[int, Field(ge=0), EXACTLY_INT]
UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$")]
Reference = Annotated[str, Field(min_length=1, max_length=200), PLAIN_TEXT]
# Who an admin is: the `sub` of their token or console session, as the identity provider
# writes it (`auth0|5f…`, an email, a GUID): any visible ASCII, unlike a user id.
AdminSubject = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]
Reason = Annotated[str, Field(min_length=1, max_length=500), PLAIN_TEXT]
FREEZE_PREFIXES = ("dispute:", "fraud:")


def _not_a_freeze(reference: str) -> str:
    if reference.startswith(FREEZE_PREFIXES):
        raise ValueError("references starting with dispute: or fraud: belong to freezes")
    return reference


BookingReference = Annotated[
    str,
    Field(min_length=1, max_length=200,
          description="Business reference, e.g. booking-123; not dispute:… or fraud:…."),
    AfterValidator(_not_a_freeze),
    PLAIN_TEXT,
]
def _storable(value: Any) -> Any:
    """Postgres `jsonb` holds no NUL character: metadata carrying one would break the
    ledger's insert after the command was accepted (a PAY500), so it is refused here."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("metadata cannot hold NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _storable(key)
            _storable(item)
    elif isinstance(value, list):
        for item in value:
            _storable(item)
    return value


Metadata = Annotated[
    dict[str, Any], Field(default_factory=dict, max_length=50), AfterValidator(_storable)
]

_NAMESPACE = uuid.UUID("4b6f1c1e-5d4c-4f1e-9a57-70696b617061")


def command_id_for(*parts: str) -> uuid.UUID:
    """Deterministic command id (UUIDv5) from business keys, e.g. booking id + action."""
    return uuid.uuid5(_NAMESPACE, "/".join(parts))


def command_fingerprint(command: "CommandEnvelope") -> str:
    """What a command id stands for: its type, user and payload (keys sorted).

    The ledger keeps it with the id, so a redelivery (same fingerprint) is answered
    with the stored result and the same id used for anything else is refused.
    """
    payload = getattr(command, "payload", None)
    # Defaults left out: a field added later with a default does not change what an
    # older command means, so its redelivery after a deploy is still the same command.
    body = payload.model_dump(mode="json", exclude_defaults=True) if payload is not None else None
    text = json.dumps([getattr(command, "type", ""), command.user_id, body],
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def means_another(
    first: tuple[str, str, str | None], command: "CommandEnvelope", fingerprint: str | None = None
) -> bool:
    """Whether `command` is not the command its id was first used for: `first` is that
    one's (type, user id, fingerprint); a fingerprint missing from older records is not
    compared."""
    kind, user, printed = first
    if (kind, user) != (getattr(command, "type", ""), command.user_id):
        return True
    return printed is not None and printed != (fingerprint or command_fingerprint(command))


def _now() -> datetime:
    return datetime.now(UTC)


class CommandEnvelope(WireModel):
    """Fields every command carries (docs/kafka.md, "Envelope and ordering")."""

    id: uuid.UUID = Field(default_factory=uuid.uuid4, description="Idempotency key.")
    schema_version: SchemaVersion = Field(1, description="Contract version; others go to the DLQ.")
    occurred_at: datetime = Field(default_factory=_now)
    user_id: UserId = Field(description="Owner of the account the command acts on.")
    correlation_id: uuid.UUID | None = Field(None, description="Traces a request end to end.")
    source: str = Field("unknown", max_length=100, description="Publishing service.")


class ChargePayload(WireModel):
    credits: Credits
    reference: Reference = Field(description="Business reference, e.g. booking-123.")
    metadata: Metadata


class ChargeCredits(CommandEnvelope):
    """Spend credits now (a booking without a hold). Earliest-expiring batches go first."""

    type: Literal["credits.charge"] = "credits.charge"
    payload: ChargePayload


class HoldPayload(WireModel):
    credits: Credits
    reference: BookingReference
    ttl_seconds: Annotated[int, Field(gt=0, le=30 * 86_400), EXACTLY_INT] | None = Field(
        None, description="Hold lifetime."
    )
    metadata: Metadata


class HoldCredits(CommandEnvelope):
    """Reserve credits for a booking; they leave `available` and show as `held`."""

    type: Literal["credits.hold"] = "credits.hold"
    payload: HoldPayload


class HoldTarget(WireModel):
    hold_id: uuid.UUID | None = Field(None, description="Id returned by the hold.")
    reference: BookingReference | None = Field(None, description="Or the reference of the hold.")


class CapturePayload(HoldTarget):
    credits: Credits | None = Field(None, description="Partial capture; the rest is released.")
    metadata: Metadata


class CaptureCredits(CommandEnvelope):
    """Turn a hold into a charge (CREDIT_USAGE)."""

    type: Literal["credits.capture"] = "credits.capture"
    payload: CapturePayload


class ReleasePayload(HoldTarget):
    reason: Reason | None = None


class ReleaseCredits(CommandEnvelope):
    """Give held credits back to the batches they came from."""

    type: Literal["credits.release"] = "credits.release"
    payload: ReleasePayload


class RefundPayload(WireModel):
    transaction_id: uuid.UUID = Field(description="The CREDIT_USAGE transaction to refund.")
    credits: Credits | None = Field(None, description="Partial refund; default all left.")
    reason: Reason


class RefundCredits(CommandEnvelope):
    """Return spent credits to their original batches (or a fresh REFUNDED batch)."""

    type: Literal["credits.refund"] = "credits.refund"
    payload: RefundPayload


class GrantPayload(WireModel):
    credits: Credits
    reason: Reason
    expires_at: AwareDatetime | None = Field(None, description="Default: CREDIT_EXPIRY_DAYS.")
    metadata: Metadata


class GrantCredits(CommandEnvelope):
    """Goodwill or adjustment credits (trusted services and admins only)."""

    type: Literal["credits.grant"] = "credits.grant"
    payload: GrantPayload


class TransferPayload(WireModel):
    to_user_id: UserId
    credits: Credits
    reason: Reason


class TransferCredits(CommandEnvelope):
    """Admin move of credits between users; they keep their batches' expiry."""

    type: Literal["credits.transfer"] = "credits.transfer"
    payload: TransferPayload


class ExpirePayload(WireModel):
    batch_id: uuid.UUID


class ExpireCredits(CommandEnvelope):
    """Expire what remains of one batch (published by `pika-payment expire`)."""

    type: Literal["credits.expire"] = "credits.expire"
    payload: ExpirePayload


class ConfirmPurchasePayload(WireModel):
    payment_intent_id: str = Field(min_length=1, max_length=255)
    purchase_id: uuid.UUID | None = Field(
        None, description="From the intent's or session's metadata (Checkout: the only link)."
    )
    amount_received: NonNegative = Field(description="Minor units Stripe says it received.")
    currency: str = Field(pattern=r"^[a-z]{3}$")
    stripe_event_id: str = Field(min_length=1, max_length=255)


class ConfirmPurchase(CommandEnvelope):
    """A verified Stripe payment: grant the purchase's credits (at most once per intent).

    Published by the webhook endpoint with `id` derived from the Stripe event id.
    """

    type: Literal["purchase.confirm"] = "purchase.confirm"
    payload: ConfirmPurchasePayload


class FailPurchasePayload(WireModel):
    payment_intent_id: str = Field(min_length=1, max_length=255)
    failure_code: str | None = Field(None, max_length=100)
    failure_message: str | None = Field(None, max_length=500)
    stripe_event_id: str = Field(min_length=1, max_length=255)


class FailPurchase(CommandEnvelope):
    """A failed Stripe payment: mark the purchase failed; no credits."""

    type: Literal["purchase.fail"] = "purchase.fail"
    payload: FailPurchasePayload


class RevokePurchasePayload(WireModel):
    payment_intent_id: str = Field(min_length=1, max_length=255)
    amount_refunded: NonNegative = Field(description="Total refunded so far (Stripe's running sum).")
    currency: str = Field(pattern=r"^[a-z]{3}$")
    stripe_event_id: str = Field(min_length=1, max_length=255)


class RevokePurchase(CommandEnvelope):
    """Money refunded in Stripe: take back the proportional credits of that purchase."""

    type: Literal["purchase.revoke"] = "purchase.revoke"
    payload: RevokePurchasePayload


class DisputePayload(WireModel):
    payment_intent_id: str = Field(min_length=1, max_length=255)
    dispute_id: str = Field(min_length=1, max_length=255)
    outcome: Literal["open", "won", "lost"] = "open"
    stripe_event_id: str = Field(min_length=1, max_length=255)


class FreezePurchase(CommandEnvelope):
    """A dispute was opened: hold the purchase's unspent credits until it closes."""

    type: Literal["purchase.freeze"] = "purchase.freeze"
    payload: DisputePayload


class SettleDispute(CommandEnvelope):
    """A dispute closed: won releases the frozen credits, lost takes them back."""

    type: Literal["purchase.settle_dispute"] = "purchase.settle_dispute"
    payload: DisputePayload


StripeId = Annotated[str, Field(min_length=1, max_length=255)]
SubscriptionStatus = Literal[
    "incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled", "unpaid",
    "paused",
]


class MembershipLink(WireModel):
    """How a Stripe object finds its membership: the subscription id, or the
    `membershipId` the subscription was created with (its webhook may beat our write)."""

    subscription_id: StripeId
    membership_id: uuid.UUID | None = None
    stripe_event_id: StripeId


class MembershipInvoicePayload(MembershipLink):
    invoice_id: StripeId
    stripe_plan_id: StripeId | None = Field(None, description="Plan of the invoice's line.")
    period_start: AwareDatetime
    period_end: AwareDatetime
    amount_paid: NonNegative = Field(description="Minor units paid (0 for a trial).")
    currency: str = Field(pattern=r"^[a-z]{3}$")
    billing_reason: str | None = Field(None, max_length=64)


class GrantMembershipPeriod(CommandEnvelope):
    """A paid (or trial) subscription invoice: grant its period's credits, once per invoice.

    Published for `invoice.paid` / `invoice.payment_succeeded`; applies the plan's
    rollover policy to the previous period's credits first.
    """

    type: Literal["membership.grant_period"] = "membership.grant_period"
    payload: MembershipInvoicePayload


class MembershipFailurePayload(MembershipLink):
    invoice_id: StripeId
    attempt: Annotated[int, Field(ge=1, le=1000), EXACTLY_INT] = Field(
        description="Stripe's attempt_count."
    )
    amount_due: NonNegative
    currency: str = Field(pattern=r"^[a-z]{3}$")
    failure_code: str | None = Field(None, max_length=100)


class FailMembershipPayment(CommandEnvelope):
    """A subscription invoice could not be collected: past_due and a dunning event."""

    type: Literal["membership.fail_payment"] = "membership.fail_payment"
    payload: MembershipFailurePayload


class SubscriptionStatePayload(MembershipLink):
    status: SubscriptionStatus
    stripe_plan_id: StripeId | None = None
    current_period_start: AwareDatetime | None = None
    current_period_end: AwareDatetime | None = None
    cancel_at_period_end: StrictBool = False
    canceled_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    stripe_created: NonNegative = Field(description="The event's `created`: newer state wins.")


class SyncMembership(CommandEnvelope):
    """Stripe's view of a subscription (created / updated / deleted) kept on the membership."""

    type: Literal["membership.sync"] = "membership.sync"
    payload: SubscriptionStatePayload


class CardPayload(WireModel):
    payment_intent_id: StripeId
    fingerprint: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="Stripe's card fingerprint: the same card on any account has the same one."
    )
    stripe_event_id: StripeId


class RecordCard(CommandEnvelope):
    """The card that paid one of the user's purchases (from `charge.succeeded`): checked
    against the other accounts that paid with it."""

    type: Literal["fraud.record_card"] = "fraud.record_card"
    payload: CardPayload


class ResolvePayload(WireModel):
    flag_id: uuid.UUID
    resolution: Literal["cleared", "confirmed"] = Field(
        description="cleared: frozen credits are released; confirmed: they are taken back."
    )
    note: Reason | None = None
    resolved_by: AdminSubject


class ResolveFraudFlag(CommandEnvelope):
    """An admin's decision on a fraud flag (admins only)."""

    type: Literal["fraud.resolve"] = "fraud.resolve"
    payload: ResolvePayload


class ResendReceiptPayload(WireModel):
    purchase_id: uuid.UUID = Field(description="The paid purchase whose receipt is sent again.")


class ResendReceipt(CommandEnvelope):
    """An admin asks for a paid purchase's receipt again (admins only): a fresh
    `receipt.requested` event (a new event id), so the notifier emails it once more."""

    type: Literal["receipt.resend"] = "receipt.resend"
    payload: ResendReceiptPayload


Command = Annotated[
    ChargeCredits
    | HoldCredits
    | CaptureCredits
    | ReleaseCredits
    | RefundCredits
    | GrantCredits
    | TransferCredits
    | ExpireCredits
    | ConfirmPurchase
    | FailPurchase
    | RevokePurchase
    | FreezePurchase
    | SettleDispute
    | GrantMembershipPeriod
    | FailMembershipPayment
    | SyncMembership
    | RecordCard
    | ResolveFraudFlag
    | ResendReceipt,
    Field(discriminator="type"),
]
# What platform services may publish on `payment.commands` (the public zone); every
# other command belongs to the payment zone (services/evidence/zones.py).
PublicCommand = Annotated[
    ChargeCredits | HoldCredits | CaptureCredits | ReleaseCredits | RefundCredits,
    Field(discriminator="type"),
]
COMMAND_MODELS: tuple[type[CommandEnvelope], ...] = (
    ChargeCredits,
    HoldCredits,
    CaptureCredits,
    ReleaseCredits,
    RefundCredits,
    GrantCredits,
    TransferCredits,
    ExpireCredits,
    ConfirmPurchase,
    FailPurchase,
    RevokePurchase,
    FreezePurchase,
    SettleDispute,
    GrantMembershipPeriod,
    FailMembershipPayment,
    SyncMembership,
    RecordCard,
    ResolveFraudFlag,
    ResendReceipt,
)
command_adapter: TypeAdapter[Command] = TypeAdapter(Command)


class CommandRequest(RootModel[Command]):
    """Any command as an HTTP body (a root model, so frameworks see one type)."""
