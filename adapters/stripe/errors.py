"""Stripe's errors as PAY errors: the caller gets a code, never a 500."""

from collections.abc import Iterator
from contextlib import contextmanager

import stripe

from services.errors import DependencyUnavailable, PaymentNotAccepted


@contextmanager
def stripe_errors() -> Iterator[None]:
    """Stripe's errors as PAY errors: the caller gets a code, never a 500."""
    try:
        yield
    except stripe.CardError as error:
        raise PaymentNotAccepted("the card was declined", stripeCode=error.code) from error
    except stripe.InvalidRequestError as error:
        raise PaymentNotAccepted("Stripe refused the request", stripeCode=error.code) from error
    except stripe.StripeError as error:
        raise DependencyUnavailable("Stripe is unavailable; nothing was charged") from error
