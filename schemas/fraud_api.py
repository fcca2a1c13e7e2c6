"""HTTP contracts of fraud review (admin): flags and their resolution."""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from schemas.base import StrictBool, StrictInt, WireModel, examples
from schemas.commands import Reason


class FraudFlagRead(WireModel):
    id: uuid.UUID
    user_id: str
    rule: str = Field(examples=["purchase_velocity"])
    subject: str = Field(description="What the flag is about within its rule (card, dispute...).")
    severity: str
    status: Literal["open", "cleared", "confirmed"]
    details: dict[str, Any]
    frozen_credits: StrictInt = Field(description="Purchased credits held until resolved.")
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolution_note: str | None = None


class FraudFlagPage(WireModel):
    items: list[FraudFlagRead]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page.")
    has_more: StrictBool = Field(
        description="True iff a further page exists (then `nextCursor` fetches it).",
    )


class ResolveRequest(WireModel):
    model_config = examples({"resolution": "cleared", "note": "card holder confirmed by phone"})

    resolution: Literal["cleared", "confirmed"] = Field(
        description="cleared: frozen credits are released; confirmed: they are taken back."
    )
    note: Reason | None = None
