"""Plain records the ledger code passes around (no I/O here)."""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Batch sources, transaction types and system accounts, as the database checks them.
PURCHASED, MEMBERSHIP, PROMOTIONAL, REFUNDED = "PURCHASED", "MEMBERSHIP", "PROMOTIONAL", "REFUNDED"
AVAILABLE, HELD = "available", "held"


@dataclass
class Account:
    id: int
    user_id: str
    available: int
    held: int

    @property
    def total(self) -> int:
        return self.available + self.held

    def balance(self) -> dict[str, int]:
        return {"available": self.available, "held": self.held, "total": self.total}


@dataclass
class Leg:
    """One posting: credits moved into (positive) or out of (negative) a bucket."""

    account_id: int
    bucket: str
    amount: int


@dataclass
class TransactionDraft:
    """A ledger transaction before it is written; its legs must sum to zero."""

    type: str
    user_id: str
    credits: int
    command_id: uuid.UUID
    legs: list[Leg] = field(default_factory=list)
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    counterparty_user_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    stripe_payment_intent_id: str | None = None
    reference: str | None = None
    related_transaction_id: uuid.UUID | None = None
    hold_id: uuid.UUID | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def unbalanced_by(self) -> int:
        return sum(leg.amount for leg in self.legs)


@dataclass
class Allocation:
    """Credits a transaction took from (negative) or put into (positive) a batch."""

    transaction_id: uuid.UUID
    batch_id: uuid.UUID
    amount: int
    expires_at: datetime
    source: str
    origin_batch_id: uuid.UUID | None = None
    debit_transaction_id: uuid.UUID | None = None
    purchase_id: uuid.UUID | None = None
    """The purchase whose money stands behind the batch (None: not bought credits)."""

    def as_event_item(self) -> dict[str, Any]:
        return {
            "batchId": str(self.batch_id),
            "credits": abs(self.amount),
            "source": self.source,
            "expiresAt": self.expires_at.isoformat(),
        }


BOOKING, FREEZE = "booking", "freeze"


@dataclass
class Hold:
    """Credits set aside: a booking's hold (`credits.hold`), or a freeze placed by a
    dispute or a fraud flag, which only their own settlement may release or take."""

    id: uuid.UUID
    account_id: int
    user_id: str
    reference: str
    credits: int
    status: str
    expires_at: datetime
    transaction_id: uuid.UUID
    kind: str = BOOKING
