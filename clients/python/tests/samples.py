"""Events and records as the service writes them, built from the client's own contracts."""

import uuid
from dataclasses import dataclass

from pika_payment_client.contracts.events import (
    BalanceChanged,
    BalanceChangedPayload,
    CreditsCharged,
    LedgerFactPayload,
)


@dataclass(frozen=True)
class FakeRecord:
    """The attributes of an aiokafka ConsumerRecord that the client reads."""

    value: bytes | None
    offset: int = 0
    partition: int = 0
    topic: str = "payment.events"
    key: bytes | None = b"u-1"


def balance_changed(user: str = "u-1", available: int = 10, delta: int = 10) -> BalanceChanged:
    return BalanceChanged(
        user_id=user,
        payload=BalanceChangedPayload(
            available=available, held=0, total=available, delta=delta,
            transaction_id=uuid.uuid4(), transaction_type="ADJUSTMENT",
        ),
    )


def credits_charged(user: str = "u-1", credits: int = 3) -> CreditsCharged:
    return CreditsCharged(
        user_id=user,
        payload=LedgerFactPayload(
            transaction_id=uuid.uuid4(), transaction_type="CREDIT_USAGE", credits=credits,
            reference="booking-1",
        ),
    )


def record_of(event: BalanceChanged | CreditsCharged, offset: int = 0, partition: int = 0) -> FakeRecord:
    return FakeRecord(event.model_dump_json().encode(), offset=offset, partition=partition)
