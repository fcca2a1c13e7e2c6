"""An example booking service that pays with Pika credits through `pika_payment_client`.

A booking holds the class's credits, check-in captures what the class cost (maybe less
than was held: the rest goes back), a cancellation releases the hold. Every call names
the booking, so the client derives the command id from it: a booking service that
crashes after publishing and books again on restart sends the same command, and the
ledger applies it once. The demo below plays all four against a running service and
prints one line per step (`step=… booking=… status=… available=… held=…`).

Against `make run` (Kafka on 127.0.0.1:9092, the API on 127.0.0.1:5505):

    export PAYMENT_SERVICE_TOKEN=$(make -s token SUB=booking-service ROLES=service)
    .venv/bin/python examples/booking_service.py demo-alice

Settings (environment): KAFKA_BOOTSTRAP_SERVERS (127.0.0.1:9092), TOPIC_PREFIX (none),
PAYMENT_API_URL (http://127.0.0.1:5505), PAYMENT_SERVICE_TOKEN (a `service` JWT; without it
outcomes come from the events only). The user needs at least 6 available credits.
"""

import argparse
import asyncio
import os
import sys
import uuid

from pika_payment_client import BrokerSettings, Outcome, Payments, PaymentsHttp


class Bookings:
    """The payment side of a booking's life: one method per moment, one command each."""

    def __init__(self, payments: Payments, timeout: float = 15.0) -> None:
        self.payments = payments
        self.timeout = timeout

    async def book(self, user_id: str, booking_id: str, credits: int) -> Outcome:
        """Hold the class's credits. PAY001: the user has too few; do not confirm."""
        handle = await self.payments.hold(user_id, credits, reference=booking_id)
        return await handle.outcome(self.timeout)

    async def check_in(self, user_id: str, booking_id: str, used: int) -> Outcome:
        """Charge what the class cost; the rest of the hold goes back to the user.
        PAY014: the hold is no longer open (released, or expired after its TTL)."""
        handle = await self.payments.capture(user_id, reference=booking_id, credits=used)
        return await handle.outcome(self.timeout)

    async def cancel(self, user_id: str, booking_id: str) -> Outcome:
        """Give the held credits back. PAY014: already captured (too late to cancel)."""
        handle = await self.payments.release(user_id, reference=booking_id, reason="cancelled")
        return await handle.outcome(self.timeout)


def report(step: str, booking_id: str, outcome: Outcome) -> None:
    balance = outcome.balance
    shown = f"available={balance.available} held={balance.held}" if balance else "balance=unchanged"
    code = f" code={outcome.code}" if outcome.code else ""
    print(f"step={step} booking={booking_id} status={outcome.status}{code} {shown} "
          f"from={outcome.learned_from}", flush=True)


def connect(http: PaymentsHttp | None) -> Payments:
    broker = BrokerSettings(os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                            topic_prefix=os.environ.get("TOPIC_PREFIX", ""))
    return Payments(broker, source="example-booking-service", http=http)


async def demo(user_id: str, run: str) -> int:
    token = os.environ.get("PAYMENT_SERVICE_TOKEN")
    http = PaymentsHttp(os.environ.get("PAYMENT_API_URL", "http://127.0.0.1:5505"), token) if token else None
    kept, cancelled, retried = (f"booking-{run}-{name}" for name in ("yoga", "spin", "pilates"))
    try:
        async with connect(http) as payments:
            bookings = Bookings(payments)
            report("book", kept, await bookings.book(user_id, kept, 3))
            report("check-in", kept, await bookings.check_in(user_id, kept, 2))
            report("book", cancelled, await bookings.book(user_id, cancelled, 2))
            report("cancel", cancelled, await bookings.cancel(user_id, cancelled))
            # The service publishes a booking's hold and crashes before it hears back.
            await payments.hold(user_id, 1, reference=retried)
        # Restarted, it books the same booking again: the same command, applied once.
        async with connect(http) as restarted:
            report("retry", retried, await Bookings(restarted).book(user_id, retried, 1))
    finally:
        if http is not None:
            await http.aclose()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("user_id", help="whose credits the bookings use (needs 6 available)")
    parser.add_argument("--run", default=uuid.uuid4().hex[:8], help="makes this run's booking ids")
    arguments = parser.parse_args()
    return asyncio.run(demo(arguments.user_id, arguments.run))


if __name__ == "__main__":
    sys.exit(main())
