"""Builders of the events a ledger change emits (written to the outbox, never sent here)."""

import uuid
from typing import Any

from schemas.commands import CommandEnvelope
from schemas.events import (
    FACT_EVENT_BY_TYPE,
    BalanceChanged,
    BalanceChangedPayload,
    CommandRejected,
    EventEnvelope,
    LedgerFactPayload,
    RejectedPayload,
)
from services.errors import PaymentError
from services.ledger.models import Allocation, TransactionDraft


def envelope_of(command: CommandEnvelope, user_id: str | None = None) -> dict[str, Any]:
    """The envelope fields every event a command causes carries (its user by default)."""
    return {
        "user_id": user_id or command.user_id,
        "correlation_id": command.correlation_id,
        "command_id": command.id,
    }


def balance_changed(
    command: CommandEnvelope,
    user_id: str,
    *,
    transaction_id: uuid.UUID,
    transaction_type: str,
    after: tuple[int, int],
    delta: int,
    held_delta: int = 0,
) -> BalanceChanged:
    available, held = after
    return BalanceChanged(
        **envelope_of(command, user_id),
        payload=BalanceChangedPayload(
            available=available,
            held=held,
            total=available + held,
            delta=delta,
            held_delta=held_delta,
            transaction_id=transaction_id,
            transaction_type=transaction_type,
        ),
    )


def ledger_fact(
    event_type: str,
    command: CommandEnvelope,
    user_id: str,
    *,
    transaction_id: uuid.UUID,
    transaction_type: str,
    credits: int,
    reference: str | None = None,
    hold_id: uuid.UUID | None = None,
    allocations: list[Allocation] | None = None,
    metadata: dict[str, Any] | None = None,
) -> EventEnvelope:
    model: Any = FACT_EVENT_BY_TYPE[event_type]
    event: EventEnvelope = model(
        **envelope_of(command, user_id),
        payload=LedgerFactPayload(
            transaction_id=transaction_id,
            transaction_type=transaction_type,
            credits=credits,
            reference=reference,
            hold_id=hold_id,
            batches=[a.as_event_item() for a in allocations or []],
            metadata=metadata or {},
        ),
    )
    return event


def announce(
    event_type: str,
    command: CommandEnvelope,
    user_id: str,
    draft: TransactionDraft,
    *,
    after: tuple[int, int],
    delta: int,
    held_delta: int = 0,
    allocations: list[Allocation] | None = None,
) -> list[EventEnvelope]:
    """The two events of every ledger change for one user: the fact, then the balance."""
    return [
        ledger_fact(
            event_type,
            command,
            user_id,
            transaction_id=draft.id,
            transaction_type=draft.type,
            credits=draft.credits,
            reference=draft.reference,
            hold_id=draft.hold_id,
            allocations=allocations,
            metadata=draft.metadata,
        ),
        balance_changed(
            command,
            user_id,
            transaction_id=draft.id,
            transaction_type=draft.type,
            after=after,
            delta=delta,
            held_delta=held_delta,
        ),
    ]


def rejected(command: CommandEnvelope, error: PaymentError) -> CommandRejected:
    return CommandRejected(
        type=f"{command.type}.rejected",  # type: ignore[attr-defined]
        **envelope_of(command),
        payload=RejectedPayload(code=error.code, message=error.message, details=error.details),
    )
