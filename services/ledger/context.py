"""What a ledger handler works with, and what it gives back."""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.commands import CommandEnvelope
from schemas.events import EventEnvelope
from services.ledger.models import Account, Allocation
from services.settings import Settings

ReturnClaims = Callable[
    ["LedgerContext", CommandEnvelope, Account, list[Allocation]], Awaitable[list[EventEnvelope]]
]


@dataclass
class LedgerContext:
    """One DB transaction (a batch of commands) and the facts fixed for it."""

    conn: AsyncConnection
    settings: Settings
    system_accounts: dict[str, int]
    now: datetime
    return_claims: ReturnClaims | None = None
    """Who may claim credits that come back to their batches (a purchase that owes
    credits or is disputed); wired in by the bootstrap, so the ledger imports no
    purchase code."""

    def system(self, code: str) -> int:
        return self.system_accounts[code]

    def default_expiry(self) -> datetime:
        return self.now + timedelta(days=self.settings.credit_expiry_days)


@dataclass
class Outcome:
    """The stored answer to one command: applied with a result, or rejected with a code."""

    command: CommandEnvelope
    status: str
    result: dict[str, Any]
    events: list[EventEnvelope] = field(default_factory=list)
    error_code: str | None = None
    dead_letter_reason: str | None = None

    @property
    def command_id(self) -> uuid.UUID:
        return self.command.id
