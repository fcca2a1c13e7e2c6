"""Client of pika-payment for platform services.

- `Payments`: charge, hold, capture, release and refund credits over Kafka, with ids
  derived from the business reference, and await each command's outcome.
- `PaymentEvents`: a typed consumer of `payment.events` that hands each event to its
  handlers once per event id and commits after they succeeded.
- `PaymentsHttp`: the HTTP API (balances, history, privileged writes) with
  `Idempotency-Key` handled.
- `pika_payment_client.contracts`: the service's wire models, copied from its schemas.
"""

from pika_payment_client.broker import BrokerSettings
from pika_payment_client.contracts.commands import SCHEMA_VERSION
from pika_payment_client.contracts.events import BalanceChanged, CommandRejected, EventEnvelope
from pika_payment_client.dedupe import DedupeStore, InMemoryDedupe, PostgresDedupe, RedisDedupe
from pika_payment_client.errors import (
    InvalidCommand,
    OutcomeUnknown,
    PaymentApiError,
    PaymentClientError,
    SchemaVersionMismatch,
)
from pika_payment_client.events import EventHandlingFailed, InvalidMessage, PaymentEvents, RetryPolicy
from pika_payment_client.http import ContractCheck, PaymentsHttp
from pika_payment_client.outcomes import Balance, Outcome
from pika_payment_client.payments import CommandHandle, Payments, command_id

__all__ = [
    "SCHEMA_VERSION",
    "Balance",
    "BalanceChanged",
    "BrokerSettings",
    "CommandHandle",
    "CommandRejected",
    "ContractCheck",
    "DedupeStore",
    "EventEnvelope",
    "EventHandlingFailed",
    "InMemoryDedupe",
    "InvalidCommand",
    "InvalidMessage",
    "Outcome",
    "OutcomeUnknown",
    "PaymentApiError",
    "PaymentClientError",
    "PaymentEvents",
    "Payments",
    "PaymentsHttp",
    "PostgresDedupe",
    "RedisDedupe",
    "RetryPolicy",
    "SchemaVersionMismatch",
    "command_id",
]
