"""A notifier on the Python client: print each balance change of pika-payment once.

It follows `payment.events` with `PaymentEvents` and prints one line per
`balance.changed` event:

    balance user=u-42 available=7 held=0 delta=-3 event=5b0c…

The outbox relay delivers at least once (it republishes what it published just before a
crash), so the same event can arrive twice; the consumer skips an event id it has
already handled, and each change is printed once.

Run it next to the local stack (`make run` in another terminal), from the repository
root with the client installed (`.venv/bin/pip install -e clients/python`):

    .venv/bin/python examples/notifier.py

Settings, from the environment; the defaults are what `make run` uses (its Kafka, tansu
when nothing else answers, on 127.0.0.1:9092; no topic prefix; Redis on 127.0.0.1:6379):

    KAFKA_BOOTSTRAP_SERVERS  127.0.0.1:9092    the broker the service publishes to
    TOPIC_PREFIX             (none)            the service's TOPIC_PREFIX
    NOTIFIER_GROUP_ID        example-notifier  the consumer group (its own offsets)
    NOTIFIER_OFFSET_RESET    earliest          where a new group starts: earliest, latest
    NOTIFIER_REDIS_URL       (unset)           e.g. redis://127.0.0.1:6379/0: remember
                                               handled ids in Redis, so a restart does not
                                               print again what it printed before its last
                                               commit (needs pika-payment-client[redis]);
                                               unset: in this process's memory

Ctrl-C (or SIGTERM) stops it after the event at hand.
"""

import asyncio
import logging
import os
import signal
import sys

from pika_payment_client import DedupeStore, EventHandlingFailed, InMemoryDedupe, PaymentEvents, RedisDedupe
from pika_payment_client.broker import BrokerSettings
from pika_payment_client.contracts.events import BalanceChanged


def dedupe_store() -> DedupeStore:
    redis_url = os.environ.get("NOTIFIER_REDIS_URL")
    if redis_url:
        return RedisDedupe.from_url(redis_url, prefix="example-notifier:seen:")
    return InMemoryDedupe()


def line(event: BalanceChanged) -> str:
    change = event.payload
    return (
        f"balance user={event.user_id} available={change.available} held={change.held} "
        f"delta={change.delta:+d} event={event.id}"
    )


async def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    broker = BrokerSettings(
        bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        topic_prefix=os.environ.get("TOPIC_PREFIX", ""),
    )
    reset = os.environ.get("NOTIFIER_OFFSET_RESET", "earliest")
    if reset not in ("earliest", "latest"):
        print(f"NOTIFIER_OFFSET_RESET must be earliest or latest, not {reset!r}", file=sys.stderr)
        return 2
    events = PaymentEvents(
        broker,
        group_id=os.environ.get("NOTIFIER_GROUP_ID", "example-notifier"),
        dedupe=dedupe_store(),
        auto_offset_reset="earliest" if reset == "earliest" else "latest",
    )

    @events.on(BalanceChanged)
    async def show(event: BalanceChanged) -> None:
        print(line(event), flush=True)

    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, events.stop)
    print(f"following {broker.events_topic} as group {events.group_id}", file=sys.stderr, flush=True)
    try:
        await events.run()
    except EventHandlingFailed as error:
        print(f"stopped: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
