"""Which events a consumer has already handled: the store `PaymentEvents` dedupes with.

The service delivers events at least once (its outbox relay republishes the rows of a
batch when it crashes between publishing and marking them sent, and a consumer that
stops before committing reads them again), so a consumer skips an event whose `id` it
has seen. The store answers two questions, one before the handlers run (`seen`) and
one after they all succeeded (`remember`); a crash between them repeats the handlers
once, which is the price of never losing an event.

Three stores: `InMemoryDedupe` (one process, bounded, forgotten at restart),
`RedisDedupe` and `PostgresDedupe` (shared by the replicas of a consumer group and kept
across restarts). The Redis and Postgres clients are the caller's, passed in: the client
package never imports `redis` or `asyncpg` unless a `from_url` helper is called, so it
installs without them (extras `pika-payment-client[redis]` and `[postgres]`).
"""

import asyncio
import importlib
import re
import uuid
from collections import OrderedDict
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pika_payment_client.errors import PaymentClientError

if TYPE_CHECKING:
    from redis.asyncio import Redis

# How long `payment.events` keeps an event by default (KAFKA_EVENT_RETENTION_DAYS): an id
# older than that cannot be delivered again, so remembering it longer is useless.
EVENT_RETENTION = timedelta(days=7)


@runtime_checkable
class DedupeStore(Protocol):
    """Event ids already handled. `seen` is asked before an event's handlers run,
    `remember` is called once they all succeeded; neither may swallow its own errors
    (a store that cannot answer must fail, not answer "not seen")."""

    async def seen(self, event_id: uuid.UUID) -> bool: ...

    async def remember(self, event_id: uuid.UUID) -> None: ...


class InMemoryDedupe:
    """The last `max_size` ids in this process, least recently seen forgotten first.

    Enough for one consumer process: the relay repeats an event within seconds of its
    first delivery, long before `max_size` newer events push it out. A restarted
    process starts empty, so an event redelivered after a restart is handled again; use
    `RedisDedupe` or `PostgresDedupe` when that matters.
    """

    def __init__(self, max_size: int = 100_000) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self._ids: OrderedDict[uuid.UUID, None] = OrderedDict()

    @property
    def size(self) -> int:
        """Ids remembered now (not `__len__`: an empty store must not be falsy)."""
        return len(self._ids)

    async def seen(self, event_id: uuid.UUID) -> bool:
        if event_id not in self._ids:
            return False
        self._ids.move_to_end(event_id)  # a repeated id is recent again: keep it longest
        return True

    async def remember(self, event_id: uuid.UUID) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self.max_size:
            self._ids.popitem(last=False)


class RedisDedupe:
    """One Redis key per handled event, `<prefix><event id>`, expiring after `ttl`.

    `client` is the caller's `redis.asyncio.Redis`. Give each consumer group its own
    `prefix`: two groups (say an email notifier and an analytics feed) must each
    handle every event. `ttl` defaults to the topic's retention, the longest an event
    can be delivered again.
    """

    def __init__(
        self, client: "Redis", *, prefix: str = "pika-payment:seen:", ttl: timedelta = EVENT_RETENTION
    ) -> None:
        if ttl.total_seconds() < 1:
            raise ValueError("ttl must be at least one second")
        self.client = client
        self.prefix = prefix
        self.ttl = ttl

    @classmethod
    def from_url(cls, url: str, **options: Any) -> "RedisDedupe":
        """A store on a new client of `url` (needs the `redis` extra)."""
        redis_asyncio = _optional("redis.asyncio", "redis")
        return cls(redis_asyncio.from_url(url), **options)

    def key(self, event_id: uuid.UUID) -> str:
        return f"{self.prefix}{event_id}"

    async def seen(self, event_id: uuid.UUID) -> bool:
        return bool(await self.client.exists(self.key(event_id)))

    async def remember(self, event_id: uuid.UUID) -> None:
        await self.client.set(self.key(event_id), b"1", ex=self.ttl)


class _Executor(Protocol):
    """What `PostgresDedupe` uses of an asyncpg `Pool` or `Connection` (both have it)."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetchval(self, query: str, *args: Any) -> Any: ...


_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
DEFAULT_TABLE = "pika_payment_seen_events"


class PostgresDedupe:
    """One row per handled event in `table` (default `pika_payment_seen_events`,
    optionally schema-qualified), created on first use when missing:

        CREATE TABLE IF NOT EXISTS pika_payment_seen_events (
            event_id uuid PRIMARY KEY, seen_at timestamptz NOT NULL DEFAULT now())

    `db` is the caller's asyncpg pool or connection: with the consumer's own database,
    the handler's writes and its dedupe row can live side by side. `remember` is an
    `INSERT ... ON CONFLICT DO NOTHING`, so two replicas remembering the same id do not
    fail. Rows are never deleted by the client: `forget_older_than(EVENT_RETENTION)`
    from a daily job keeps the table small.
    """

    def __init__(self, db: _Executor, *, table: str = DEFAULT_TABLE) -> None:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"table must be a lowercase SQL name (optionally schema.name), got {table!r}")
        self.db = db
        self.table = table
        self._ready = False
        self._creating = asyncio.Lock()

    @classmethod
    async def connect(cls, dsn: str, *, table: str = DEFAULT_TABLE) -> "PostgresDedupe":
        """A store on a new asyncpg pool of `dsn` (needs the `postgres` extra); the
        caller closes it with `await store.db.close()`."""
        asyncpg = _optional("asyncpg", "postgres")
        return cls(await asyncpg.create_pool(dsn, min_size=1, max_size=2), table=table)

    async def create_table(self) -> None:
        """Create the table if it is missing; called by the first `seen`/`remember`."""
        if self._ready:
            return
        async with self._creating:
            if not self._ready:
                await self.db.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.table} ("
                    "event_id uuid PRIMARY KEY, seen_at timestamptz NOT NULL DEFAULT now())"
                )
                self._ready = True

    async def seen(self, event_id: uuid.UUID) -> bool:
        await self.create_table()
        query = f"SELECT EXISTS (SELECT 1 FROM {self.table} WHERE event_id = $1)"
        return bool(await self.db.fetchval(query, event_id))

    async def remember(self, event_id: uuid.UUID) -> None:
        await self.create_table()
        await self.db.execute(
            f"INSERT INTO {self.table} (event_id) VALUES ($1) ON CONFLICT DO NOTHING", event_id
        )

    async def forget_older_than(self, age: timedelta) -> None:
        """Delete ids remembered more than `age` ago (no longer deliverable after the
        topic's retention)."""
        await self.create_table()
        await self.db.execute(f"DELETE FROM {self.table} WHERE seen_at < now() - $1::interval", age)


def _optional(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise PaymentClientError(
            f"{module} is not installed: pip install 'pika-payment-client[{extra}]'"
        ) from error
