"""One error hierarchy for the whole service, mapped to PAY codes in one place.

The domain raises these with context; the ingress turns them into
`{"code", "message", "details"}` with the status below, and the ledger worker stores
them as the rejected result of a command. Codes PAY001-PAY006 keep the seed's meaning.
"""

from typing import Any, ClassVar


class PaymentError(Exception):
    """Base of every error a caller may see; never carries secrets."""

    code: ClassVar[str] = "PAY500"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.title
        self.details = details
        super().__init__(self.message)

    def as_body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InsufficientCredits(PaymentError):
    code, status, title = "PAY001", 402, "Insufficient credits"


class PaymentFailed(PaymentError):
    code, status, title = "PAY002", 402, "Payment failed"


class InvalidPromoCode(PaymentError):
    code, status, title = "PAY003", 400, "Invalid promo code"


class SubscriptionAlreadyActive(PaymentError):
    code, status, title = "PAY004", 409, "Subscription already active"


class WebhookSignatureInvalid(PaymentError):
    code, status, title = "PAY005", 400, "Webhook signature invalid"


class CreditLimitExceeded(PaymentError):
    code, status, title = "PAY006", 422, "Credit limit exceeded"


class ValidationFailed(PaymentError):
    code, status, title = "PAY007", 422, "Request is not valid"


class NotFound(PaymentError):
    code, status, title = "PAY008", 404, "Not found"


class Unauthorized(PaymentError):
    code, status, title = "PAY009", 401, "Authentication required"


class Forbidden(PaymentError):
    code, status, title = "PAY010", 403, "Not allowed"


class RateLimited(PaymentError):
    code, status, title = "PAY011", 429, "Too many requests"


class IdempotencyKeyReused(PaymentError):
    code, status, title = "PAY012", 422, "Idempotency-Key was used with a different request"


class IdempotencyRequestInFlight(PaymentError):
    code, status, title = "PAY013", 409, "A request with this Idempotency-Key is in progress"


class InvalidState(PaymentError):
    code, status, title = "PAY014", 409, "The operation does not fit the current state"


class DependencyUnavailable(PaymentError):
    code, status, title = "PAY015", 503, "A dependency is unavailable; nothing was changed"


class TransactionLimitExceeded(PaymentError):
    code, status, title = "PAY016", 422, "Transaction limit exceeded"


class ConfigurationInvalid(PaymentError):
    """Raised while the settings load, so a process with a half-made configuration (a
    Kafka login without its password, a certificate path that is not there) stops at
    startup instead of failing, or running unauthenticated, at its first request."""

    code, status, title = "PAY017", 500, "The service configuration is not valid"


ALL_ERRORS: tuple[type[PaymentError], ...] = (
    InsufficientCredits,
    PaymentFailed,
    InvalidPromoCode,
    SubscriptionAlreadyActive,
    WebhookSignatureInvalid,
    CreditLimitExceeded,
    ValidationFailed,
    NotFound,
    Unauthorized,
    Forbidden,
    RateLimited,
    IdempotencyKeyReused,
    IdempotencyRequestInFlight,
    InvalidState,
    DependencyUnavailable,
    TransactionLimitExceeded,
    ConfigurationInvalid,
    PaymentError,
)
