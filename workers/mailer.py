"""Notify worker, sending side: pending `sent_notifications` rows → SMTP.

A loop takes due rows under a lease (see `services/notifications/store.py` for the
claim → send → mark protocol and its crash window) and sends them concurrently,
each on its own SMTP connection within SMTP_TIMEOUT, so one slow or refused email
never delays the others. A failed send is rescheduled with exponential backoff
(NOTIFY_RETRY_BASE_SECONDS doubling up to NOTIFY_RETRY_MAX_SECONDS); after
NOTIFY_MAX_ATTEMPTS tries, or at once when the server refuses for good (5xx to the
recipient or the content) or the email cannot be rendered, the event goes to
`payment.events.dlq` with the reason and the row ends `failed`.
"""

import asyncio
import contextlib
import logging

from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.events import event_adapter
from services.metrics import DEAD_LETTERS, NOTIFICATIONS
from services.notifications import smtp, store
from services.notifications.compose import notification_for
from services.notifications.render import build_message
from services.settings import Settings
from workers import dead_letters

log = logging.getLogger("pika.mailer")
TAKE = 20
CONCURRENCY = 5


def backoff(settings: Settings, attempts: int) -> float:
    """Delay before try `attempts + 1`: base, 2 * base, 4 * base ... capped."""
    delay: float = settings.notify_retry_base_seconds * 2 ** (attempts - 1)
    return min(settings.notify_retry_max_seconds, delay)


class Mailer:
    def __init__(self, broker: KafkaBroker, engine: AsyncEngine, settings: Settings) -> None:
        self.broker = broker
        self.engine = engine
        self.settings = settings
        self.wake = asyncio.Event()
        self.lease = max(60.0, 3 * settings.smtp_timeout)
        self.poll = min(1.0, settings.notify_retry_base_seconds)
        self._slots = asyncio.Semaphore(CONCURRENCY)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop`; a round in progress is finished, never cut mid-SMTP."""
        while not stop.is_set():
            try:
                due = await store.take_due(self.engine, TAKE, self.lease)
                if due:
                    results = await asyncio.gather(
                        *(self._deliver(d) for d in due), return_exceptions=True
                    )
                    for result in results:
                        if isinstance(result, Exception):
                            log.warning("delivery left for its lease to end (%s)", smtp.describe(result))
                    if len(due) == TAKE:
                        continue
            except Exception as error:  # database away: try again, never die
                log.warning("mailer round failed (%s); retrying", smtp.describe(error))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(self.wake, stop), self.poll)

    async def _deliver(self, due: store.Due) -> None:
        async with self._slots:
            try:
                notification = notification_for(event_adapter.validate_json(due.event))
                if notification is None:
                    raise ValueError(f"no email for this event type ({due.template})")
                message = build_message(
                    notification, due.event_id, self.settings.smtp_from, due.recipient
                )
            except Exception as error:
                await self._dead_letter(due, due.attempts, f"cannot render: {smtp.describe(error)}")
                return
            try:
                await smtp.send(self.settings, message)
            except Exception as error:
                await self._failed(due, error)
                return
            await self._mark_sent(due)

    async def _mark_sent(self, due: store.Due) -> None:
        # A few quick tries: until `sent` is stored, the lease's end would send again.
        for delay in (0.2, 0.5, 1.0, 2.0, None):
            try:
                await store.mark_sent(self.engine, due)
                break
            except Exception as error:
                if delay is None:
                    log.error("email %s/%s sent but not marked (%s); it may be sent again",
                              due.event_id, due.template, smtp.describe(error))
                    return
                await asyncio.sleep(delay)
        NOTIFICATIONS.labels(template=due.template, outcome="sent").inc()
        log.info("%s email for event %s sent", due.template, due.event_id,
                 extra={"user_id": due.user_id})

    async def _failed(self, due: store.Due, error: BaseException) -> None:
        attempts = due.attempts + 1
        reason = smtp.describe(error)
        if smtp.is_permanent(error) or attempts >= self.settings.notify_max_attempts:
            await self._dead_letter(due, attempts, f"smtp, {attempts} attempts: {reason}")
            return
        delay = backoff(self.settings, attempts)
        await store.reschedule(self.engine, due, attempts, delay, reason)
        NOTIFICATIONS.labels(template=due.template, outcome="retried").inc()
        log.warning("%s email for event %s failed (%s); try %d in %.1fs", due.template,
                    due.event_id, reason, attempts + 1, delay)

    async def _dead_letter(self, due: store.Due, attempts: int, reason: str) -> None:
        """The event to the events DLQ first, then the row `failed`: at least once there."""
        topic = self.settings.events_dlq_topic
        await self.broker.publish(
            due.event.encode(),
            topic=topic,
            key=due.user_id.encode(),
            headers={
                dead_letters.REASON: reason[:1000],
                dead_letters.ORIGINAL_TOPIC: self.settings.events_topic,
                dead_letters.NOTIFICATION_TEMPLATE: due.template,
                dead_letters.ATTEMPTS: str(attempts),
            },
        )
        DEAD_LETTERS.labels(topic=topic).inc()
        await store.mark_failed(self.engine, due, attempts, reason)
        NOTIFICATIONS.labels(template=due.template, outcome="failed").inc()
        log.error("%s email for event %s dead-lettered: %s", due.template, due.event_id, reason)


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
