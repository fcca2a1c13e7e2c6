"""Client of pika-payment."""
from pika_payment_client.dedupe import DedupeStore as DedupeStore
from pika_payment_client.dedupe import InMemoryDedupe as InMemoryDedupe
from pika_payment_client.dedupe import PostgresDedupe as PostgresDedupe
from pika_payment_client.dedupe import RedisDedupe as RedisDedupe
from pika_payment_client.events import EventHandlingFailed as EventHandlingFailed
from pika_payment_client.events import InvalidMessage as InvalidMessage
from pika_payment_client.events import PaymentEvents as PaymentEvents
from pika_payment_client.events import RetryPolicy as RetryPolicy
