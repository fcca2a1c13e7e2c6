"""The dedupe stores' semantics that need no server."""

import uuid
from datetime import timedelta
from typing import Any

import pytest

from pika_payment_client import DedupeStore, InMemoryDedupe, PostgresDedupe, RedisDedupe


async def test_an_id_is_seen_only_after_it_is_remembered() -> None:
    store = InMemoryDedupe()
    first, other = uuid.uuid4(), uuid.uuid4()
    assert not await store.seen(first)
    await store.remember(first)
    assert await store.seen(first)
    assert not await store.seen(other)
    await store.remember(first)  # remembering twice is harmless
    assert store.size == 1


async def test_in_memory_store_forgets_the_least_recently_seen_beyond_its_size() -> None:
    store = InMemoryDedupe(max_size=2)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await store.remember(a)
    await store.remember(b)
    assert await store.seen(a)  # a is now more recent than b
    await store.remember(c)
    assert store.size == 2
    assert await store.seen(a) and await store.seen(c)
    assert not await store.seen(b)


def test_in_memory_store_needs_room_for_one_id() -> None:
    with pytest.raises(ValueError):
        InMemoryDedupe(max_size=0)


def test_every_store_is_a_dedupe_store() -> None:
    assert isinstance(InMemoryDedupe(), DedupeStore)
    assert isinstance(RedisDedupe(object(), prefix="x:"), DedupeStore)  # type: ignore[arg-type]
    assert isinstance(PostgresDedupe(object()), DedupeStore)  # type: ignore[arg-type]


def test_redis_keys_carry_the_prefix_and_the_ttl_is_at_least_a_second() -> None:
    event_id = uuid.uuid4()
    store = RedisDedupe(object(), prefix="notifier:seen:")  # type: ignore[arg-type]
    assert store.key(event_id) == f"notifier:seen:{event_id}"
    assert store.ttl == timedelta(days=7)
    with pytest.raises(ValueError):
        RedisDedupe(object(), ttl=timedelta(milliseconds=10))  # type: ignore[arg-type]


@pytest.mark.parametrize("table", ["seen; DROP TABLE x", "Seen", "a.b.c", "", "1seen"])
def test_postgres_table_name_must_be_a_plain_sql_name(table: str) -> None:
    with pytest.raises(ValueError):
        PostgresDedupe(object(), table=table)  # type: ignore[arg-type]


class RecordingDb:
    """Answers like asyncpg for the statements PostgresDedupe sends, keeping them."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.rows: set[Any] = set()

    async def execute(self, query: str, *args: Any) -> str:
        self.statements.append(query)
        if query.startswith("INSERT"):
            self.rows.add(args[0])
        return "OK"

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.statements.append(query)
        return args[0] in self.rows


async def test_postgres_store_creates_its_table_once_and_inserts_without_conflict_errors() -> None:
    db = RecordingDb()
    store = PostgresDedupe(db, table="notify.seen_events")
    event_id = uuid.uuid4()
    assert not await store.seen(event_id)
    await store.remember(event_id)
    assert await store.seen(event_id)
    creates = [s for s in db.statements if s.startswith("CREATE TABLE IF NOT EXISTS notify.seen_events")]
    assert len(creates) == 1
    assert any("ON CONFLICT DO NOTHING" in s for s in db.statements if s.startswith("INSERT"))
