"""What one admin action records about itself (a row of `admin_actions`)."""

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["grant", "refund_purchase", "release_hold", "resolve_fraud_flag", "resend_receipt"]
ACTIONS: tuple[Action, ...] = (
    "grant", "refund_purchase", "release_hold", "resolve_fraud_flag", "resend_receipt",
)


@dataclass(frozen=True)
class AdminAction:
    """Who asked for which action on whose account, and why.

    `request` holds the action's own fields as the admin sent them (credits, purchase,
    hold, flag, amount...), never a token or a header: the audit shows it to every admin.
    """

    admin: str
    action: Action
    user_id: str
    reason: str
    idempotency_key: str
    request: dict[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
