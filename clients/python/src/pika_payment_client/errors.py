"""What the client raises. Every error is a `PaymentClientError`, so a caller can
catch the client's failures apart from its own."""

from typing import Any


class PaymentClientError(Exception):
    """Base of every error the client raises."""


class InvalidCommand(PaymentClientError, ValueError):
    """The command does not satisfy the service's contract; nothing was published.

    The contract is the service's own (a generated copy of its `schemas/`), so what the
    client refuses here the ledger worker would have dead-lettered.
    """


class OutcomeUnknown(PaymentClientError, TimeoutError):
    """No outcome within the timeout: the command may still be applied later.

    Publishing the same command again (same business reference) is safe: its id is
    derived from the reference, so the ledger applies it at most once.
    """

    def __init__(self, command_id: object, timeout: float) -> None:
        super().__init__(f"no outcome for command {command_id} within {timeout} s")
        self.command_id = command_id
        self.timeout = timeout


class SchemaVersionMismatch(PaymentClientError):
    """The service speaks another contract version than this client."""


class PaymentApiError(PaymentClientError):
    """An HTTP error answered by the service: its status and PAY code (docs/api.md)."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after
