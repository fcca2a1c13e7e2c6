"""HTTP contracts of the support console's admin actions and their audit trail.

Every action names its customer in the path and carries a `reason` (1 to 500
characters), recorded with the acting admin in the audit trail; the reply is the
command's result (`CommandAppliedRead`, or 202 `CommandPendingRead`) or its PAY error.
"""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field

from schemas.api import MinorUnits
from schemas.base import PLAIN_TEXT, StrictBool, StrictInt, WireModel, examples
from schemas.commands import Credits

# Why the admin acts: required, 1 to 500 characters, not blank (the audit shows it).
ActionReason = Annotated[
    str,
    Field(min_length=1, max_length=500, pattern=r"\S",
          description="Why the admin acts (1 to 500 characters, not blank); kept in the audit."),
    PLAIN_TEXT,
]

AuditAction = Literal[
    "grant", "refund_purchase", "release_hold", "resolve_fraud_flag", "resend_receipt"
]


class SupportGrantRequest(WireModel):
    """Goodwill credits as a PROMOTIONAL batch."""

    model_config = examples({"credits": 25, "reason": "goodwill: booking #812 was cancelled"})

    credits: Credits
    reason: ActionReason
    expires_at: AwareDatetime | None = Field(None, description="Default: CREDIT_EXPIRY_DAYS.")


class SupportRefundPurchaseRequest(WireModel):
    """Money back through Stripe, and the purchase's credits in proportion taken back."""

    model_config = examples(
        {"purchaseId": "3f0e4c5a-6f1e-4c2b-9a55-2d8e1f0b7c44", "reason": "charged twice"},
        {"purchaseId": "3f0e4c5a-6f1e-4c2b-9a55-2d8e1f0b7c44", "amount": 600,
         "reason": "partial: one session was cancelled"},
    )

    purchase_id: uuid.UUID
    amount: MinorUnits | None = Field(
        None, description="Minor units to refund; default all that is left."
    )
    reason: ActionReason


class SupportReleaseHoldRequest(WireModel):
    """Give a hold's credits back to the batches they came from (not a freeze)."""

    model_config = examples({"holdId": "6b1d1f2e-8a43-4f57-b2a5-3c51a8a4e0d2",
                             "reason": "the booking service lost the booking"})

    hold_id: uuid.UUID
    reason: ActionReason


class SupportResolveFraudFlagRequest(WireModel):
    """cleared releases the credits the flag froze; confirmed takes them back."""

    model_config = examples({"flagId": "9d2c4e61-0c4b-4ad9-8c10-2f5e7b1b6a33",
                             "resolution": "cleared", "reason": "card holder confirmed by phone"})

    flag_id: uuid.UUID
    resolution: Literal["cleared", "confirmed"]
    reason: ActionReason = Field(description="Kept in the audit and as the flag's note.")


class SupportResendReceiptRequest(WireModel):
    """Email a paid purchase's receipt again (a new `receipt.requested` event)."""

    model_config = examples({"purchaseId": "3f0e4c5a-6f1e-4c2b-9a55-2d8e1f0b7c44",
                             "reason": "customer never got the first one"})

    purchase_id: uuid.UUID
    reason: ActionReason


class AuditEffectRead(WireModel):
    """One ledger transaction the action's command wrote."""

    transaction_id: uuid.UUID
    type: str = Field(examples=["PROMO_BONUS"])
    credits: StrictInt
    amount: StrictInt | None = Field(None, description="Money in minor units, when it moved.")
    currency: str | None = None


class AuditEntryRead(WireModel):
    id: uuid.UUID
    at: datetime = Field(description="When the admin asked.")
    admin: str = Field(description="The acting admin (the token's or session's subject).")
    action: AuditAction
    user_id: str
    reason: str
    command_id: uuid.UUID
    command_type: str
    request: dict[str, Any] = Field(description="The action's fields as the admin sent them.")
    status: Literal["pending", "applied", "rejected"]
    error_code: str | None = Field(None, description="The PAY code of a rejected command.")
    effect: AuditEffectRead | None = Field(
        None, description="The command's (first) ledger transaction; none for a receipt."
    )
    effects: list[AuditEffectRead] = Field(description="Every ledger transaction it wrote.")


class AuditPage(WireModel):
    items: list[AuditEntryRead]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")
    has_more: StrictBool = Field(
        description="True iff a further page exists (then `nextCursor` fetches it).",
    )
