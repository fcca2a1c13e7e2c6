"""Waking the HTTP writes that wait for the ledger's answer: one LISTEN per process.

A write publishes its command and waits up to PAYMENT_REPLY_TIMEOUT for the stored
answer. The ledger worker NOTIFYs the ids of every batch it commits
(services.ledger.reply_store); this module keeps ONE asyncpg connection per ingress
process listening on that channel and wakes the requests waiting for those ids. A
woken request reads its own command's stored answer (ingress.gateway): a notification
never carries an answer, so a stray or wrong wake-up costs one read, never a wrong reply.

Notifications can be missed: the connection drops, Postgres restarts, the listener
is not up yet. So the listener reconnects on its own, and on every (re)connect wakes
every waiter to look again; a waiter also looks once a SAFETY_RECHECK_SECONDS whatever
happens, so a lost notification delays an answer by at most that, never loses it.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator

import asyncpg

from services.ledger.reply_store import CHANNEL, command_ids_of
from services.metrics import DB_ROUND_TRIPS
from services.settings import Settings

log = logging.getLogger("pika.ingress")
SAFETY_RECHECK_SECONDS = 1.0
RECONNECT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 5.0
_LISTEN = DB_ROUND_TRIPS.labels(kind="listen")


class ReplyWaiters:
    """Command id -> the events of the requests waiting for it, and the listener."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.plain_database_url
        self.waiting: dict[uuid.UUID, set[asyncio.Event]] = {}
        self.connected = asyncio.Event()  # set while the listener is up (tests wait on it)
        self.connection: asyncpg.Connection | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen in the background; a Postgres that is down is retried, not fatal."""
        self.task = asyncio.create_task(self._listen_forever(), name="reply-listener")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.wake_all()

    @contextlib.contextmanager
    def waiter(self, command_id: uuid.UUID) -> Iterator[asyncio.Event]:
        """An event set when `command_id` may have an answer; register it before publishing
        so the worker's notification cannot come first."""
        event = asyncio.Event()
        self.waiting.setdefault(command_id, set()).add(event)
        try:
            yield event
        finally:
            events = self.waiting.get(command_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self.waiting[command_id]

    def wake(self, command_ids: list[uuid.UUID]) -> None:
        for command_id in command_ids:
            for event in self.waiting.get(command_id, ()):
                event.set()

    def wake_all(self) -> None:
        """Every waiter looks again (notifications may have been missed)."""
        for events in self.waiting.values():
            for event in events:
                event.set()

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.wake(command_ids_of(payload))

    async def _listen_forever(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_SECONDS)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("reply listener cannot connect (%s); waiters re-check every %.0fs",
                            type(error).__name__, SAFETY_RECHECK_SECONDS)
            else:
                try:
                    await self._listen_on(conn)
                    log.warning("reply listener connection lost; reconnecting")
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    log.warning("reply listener failed (%s); reconnecting", type(error).__name__)
                finally:
                    self.connected.clear()
                    self.connection = None
                    conn.terminate()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen_on(self, conn: asyncpg.Connection) -> None:
        """LISTEN on `conn` until it closes; every waiter looks again once it listens."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(CHANNEL, self._on_notification)
        _LISTEN.inc()
        self.connection = conn
        self.connected.set()
        self.wake_all()  # what was answered while nobody listened
        while not conn.is_closed() and not lost.is_set():
            with contextlib.suppress(TimeoutError):  # a silent drop shows in is_closed()
                await asyncio.wait_for(lost.wait(), SAFETY_RECHECK_SECONDS)
