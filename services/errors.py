"""One error hierarchy for the whole service: the PAY error catalogue.

Each class carries its code, HTTP status, title and description, and every other
place derives from these classes rather than re-listing codes: the ingress turns a
raised error into `{"code", "message", "details"}` with its status and documents its
error responses in the OpenAPI document from `ERROR_CATALOGUE`; the ledger worker
stores an error as the rejected result of a command, and the reply's status is looked
up here; handlers name the class (or its `.code`) instead of writing the code out.
The docs' error table is checked against this catalogue by a test. Codes PAY001-PAY006
keep the seed's meaning.
"""

from typing import Any, ClassVar, NamedTuple


class PaymentError(Exception):
    """Base of every error a caller may see; never carries secrets."""

    code: ClassVar[str] = "PAY500"
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    description: ClassVar[str] = (
        "an unexpected failure; a command that broke a handler is rejected with it and dead-lettered"
    )

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.title
        self.details = details
        super().__init__(self.message)

    def as_body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InsufficientCredits(PaymentError):
    code, status, title = "PAY001", 402, "Insufficient credits"
    description = "the available balance is short of the credits asked for"


class PaymentNotAccepted(PaymentError):
    """A payment that cannot be counted: the card was declined, Stripe refused the
    request, or what was received does not match the purchase. (Not the
    `payment.failed` event, which announces a declined payment to the user.)"""

    code, status, title = "PAY002", 402, "Payment failed"
    description = (
        "declined or refused, or the amount received does not match the purchase"
    )


class InvalidPromoCode(PaymentError):
    code, status, title = "PAY003", 400, "Invalid promo code"
    description = "the code gives nothing here, `details.reason` says why"


class SubscriptionAlreadyActive(PaymentError):
    code, status, title = "PAY004", 409, "Subscription already active"
    description = "a live membership exists"


class WebhookSignatureInvalid(PaymentError):
    code, status, title = "PAY005", 400, "Webhook signature invalid"
    description = "bad, stale or missing `Stripe-Signature`, or the body is not an event"


class CreditLimitExceeded(PaymentError):
    code, status, title = "PAY006", 422, "Credit limit exceeded"
    description = "the balance would pass `MAX_CREDIT_BALANCE`"


class ValidationFailed(PaymentError):
    code, status, title = "PAY007", 422, "Request is not valid"
    description = "the body, query, cursor or `Idempotency-Key`, nothing changed"


class NotFound(PaymentError):
    code, status, title = "PAY008", 404, "Not found"
    description = "no such resource, or it is not yours"


class Unauthorized(PaymentError):
    code, status, title = "PAY009", 401, "Authentication required"
    description = "the token is missing, invalid or expired"


class Forbidden(PaymentError):
    code, status, title = "PAY010", 403, "Not allowed"
    description = "the caller's role or account does not allow this"


class RateLimited(PaymentError):
    code, status, title = "PAY011", 429, "Too many requests"
    description = "`Retry-After` says when to retry"


class IdempotencyKeyReused(PaymentError):
    code, status, title = "PAY012", 422, "Idempotency-Key was used with a different request"
    description = (
        "the key, or a command id, was already used for another request"
    )


class IdempotencyRequestInFlight(PaymentError):
    code, status, title = "PAY013", 409, "A request with this Idempotency-Key is in progress"
    description = "retry when it has finished"


class InvalidState(PaymentError):
    code, status, title = "PAY014", 409, "The operation does not fit the current state"
    description = "e.g. the hold is not open, or nothing is left to refund"


class DependencyUnavailable(PaymentError):
    code, status, title = "PAY015", 503, "A dependency is unavailable; nothing was changed"
    description = "Redis, Kafka or the JWKS did not answer, retry"


class TransactionLimitExceeded(PaymentError):
    code, status, title = "PAY016", 422, "Transaction limit exceeded"
    description = "too many credits in one command, too few in a purchase, or too many today"


class ConfigurationInvalid(PaymentError):
    """Raised while the settings load, so a process with a half-made configuration (a
    Kafka login without its password, a certificate path that is not there) stops at
    startup instead of failing, or running unauthenticated, at its first request."""

    code, status, title = "PAY017", 500, "The service configuration is not valid"
    description = "the process stops at startup"


ALL_ERRORS: tuple[type[PaymentError], ...] = (
    InsufficientCredits,
    PaymentNotAccepted,
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


class CatalogueEntry(NamedTuple):
    """What one PAY code means: its HTTP status, title and a description for callers."""

    status: int
    title: str
    description: str


ERROR_CATALOGUE: dict[str, CatalogueEntry] = {
    error.code: CatalogueEntry(error.status, error.title, error.description)
    for error in ALL_ERRORS
}
"""PAY code -> (status, title, description), derived from the classes above."""


def status_of(code: str | None) -> int:
    """The HTTP status of a stored PAY code; 500 for none or one this catalogue does not know."""
    entry = ERROR_CATALOGUE.get(code or PaymentError.code)
    return entry.status if entry else PaymentError.status
