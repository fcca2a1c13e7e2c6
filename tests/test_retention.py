"""`pika-payment prune` on the real database (and worker): what goes, what stays.

Rows are aged by rewriting their timestamps, the only way to have a month-old row in
a test; every assertion names the rows of its own test, so other tests' rows (and
other old rows in the session database) change nothing here.
"""

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ops.migrate import migrate
from ops.prune import prune
from schemas.commands import ChargeCredits, ChargePayload, GrantCredits, GrantPayload
from services.db import make_engine
from services.ledger.invariant_queries import EVENTS_CHECK, reconcile
from services.notifications.reminders import due_reminders
from services.settings import Settings
from tests.conftest import ChildProcess, _drop_database, publish, wait_processed
from tests.test_cli import cli

OUTBOX_ROW = text(
    "INSERT INTO outbox (event_id, command_id, topic, key, event_type, payload, created_at, "
    "sent_at) VALUES (:event, :command, 't', 'k', 'x', '{}', now() - make_interval(days => :age), "
    "CASE WHEN :sent THEN now() - make_interval(days => :age) END)"
)
COMMAND_ROW = text(
    "INSERT INTO processed_commands (command_id, type, user_id, status, result, processed_at) "
    "VALUES (:id, 'credits.charge', 'retention-test', :status, '{}', "
    "now() - make_interval(days => :age))"
)
STRIPE_ROW = text(
    "INSERT INTO stripe_events (event_id, type, received_at) "
    "VALUES (:id, 'payment_intent.succeeded', now() - make_interval(days => :age))"
)
NOTIFICATION_ROW = text(
    "INSERT INTO sent_notifications (event_id, template, user_id, recipient, status, "
    "next_attempt_at, event, created_at, sent_at) VALUES (:event, :template, 'retention-test', "
    "'someone@example.com', :status, CASE WHEN :status = 'pending' THEN now() END, "
    "CASE WHEN :status = 'pending' THEN '{}' END, now() - make_interval(days => :age), "
    "CASE WHEN :status <> 'pending' THEN now() - make_interval(days => :age) END)"
)


async def _insert(engine: AsyncEngine) -> dict[str, Any]:
    """One row of each kind on each side of its window (defaults: 7, 30, 30 days)."""
    rows: dict[str, Any] = {
        "outbox_old_sent": uuid.uuid4(), "outbox_old_unsent": uuid.uuid4(),
        "outbox_new_sent": uuid.uuid4(),
        "command_old_rejected": uuid.uuid4(), "command_old_applied": uuid.uuid4(),
        "command_new_rejected": uuid.uuid4(),
        "stripe_old": f"evt_old_{uuid.uuid4().hex}", "stripe_new": f"evt_new_{uuid.uuid4().hex}",
    }
    # (event id, template): two templates of one event, so the keyset walks both columns.
    claimed_twice = uuid.uuid4()
    notifications = {
        "notification_old_sent": ((claimed_twice, "receipt"), 31, "sent"),
        "notification_old_sent_other_template": ((claimed_twice, "refund"), 31, "sent"),
        "notification_old_skipped": ((uuid.uuid4(), "receipt"), 31, "skipped"),
        "notification_old_failed": ((uuid.uuid4(), "receipt"), 31, "failed"),
        "notification_old_pending": ((uuid.uuid4(), "receipt"), 60, "pending"),
        "notification_new_sent": ((uuid.uuid4(), "receipt"), 29, "sent"),
    }
    rows.update({key: claim for key, (claim, _, _) in notifications.items()})
    async with engine.begin() as conn:
        for key, age, sent in (("outbox_old_sent", 8, True), ("outbox_old_unsent", 60, False),
                               ("outbox_new_sent", 6, True)):
            await conn.execute(OUTBOX_ROW, {"event": rows[key], "command": None, "age": age,
                                            "sent": sent})
        for key, age, status in (("command_old_rejected", 31, "rejected"),
                                 ("command_old_applied", 400, "applied"),
                                 ("command_new_rejected", 29, "rejected")):
            await conn.execute(COMMAND_ROW, {"id": rows[key], "age": age, "status": status})
        for key, age in (("stripe_old", 31), ("stripe_new", 29)):
            await conn.execute(STRIPE_ROW, {"id": rows[key], "age": age})
        for (event, template), age, status in notifications.values():
            await conn.execute(NOTIFICATION_ROW, {"event": event, "template": template,
                                                  "age": age, "status": status})
    return rows


async def _present(engine: AsyncEngine, rows: dict[str, Any]) -> set[str]:
    async with engine.connect() as conn:
        outbox = set((await conn.execute(
            text("SELECT event_id FROM outbox WHERE event_id = ANY(:ids)"),
            {"ids": [v for k, v in rows.items() if k.startswith("outbox")]})).scalars())
        commands = set((await conn.execute(
            text("SELECT command_id FROM processed_commands WHERE command_id = ANY(:ids)"),
            {"ids": [v for k, v in rows.items() if k.startswith("command")]})).scalars())
        stripe = set((await conn.execute(
            text("SELECT event_id FROM stripe_events WHERE event_id = ANY(:ids)"),
            {"ids": [v for k, v in rows.items() if k.startswith("stripe")]})).scalars())
        claims = set(map(tuple, (await conn.execute(
            text("SELECT event_id, template FROM sent_notifications WHERE event_id = ANY(:ids)"),
            {"ids": [v[0] for k, v in rows.items() if k.startswith("notification")]})).all()))
    return {key for key, value in rows.items() if value in outbox | commands | stripe | claims}


def _count(output: str, table: str, verb: str) -> int:
    found = re.search(rf"prune: {table}: {verb} (\d+) rows", output)
    assert found, output
    return int(found[1])


@pytest.fixture(scope="module")
def own(services, settings) -> Iterator[Settings]:
    """This module's own database, topics and consumer group: its aged rows, pruned
    outbox rows and commands without events are discrepancies on purpose, which the
    tests that check the session ledger with `reconcile` must never see."""
    name = f"{services.database_name}_prune_{uuid.uuid4().hex[:6]}"
    isolated = settings.model_copy(update={
        "database_url": f"{services.database_admin_url.rsplit('/', 1)[0]}/{name}",
        "topic_prefix": f"prune-{uuid.uuid4().hex[:6]}-",
    })
    migrate(isolated)
    yield isolated
    asyncio.run(_drop_database(services.database_admin_url, name))


@pytest.fixture(scope="module")
async def own_engine(own: Settings) -> AsyncIterator[AsyncEngine]:
    created = make_engine(own, pool_size=2)
    yield created
    await created.dispose()


@pytest.fixture(scope="module")
def own_worker(own: Settings) -> Iterator[ChildProcess]:
    child = ChildProcess("worker", own, name="worker-prune").start()
    yield child
    child.stop()


async def test_prune_removes_only_rows_past_their_window_in_batches(own, own_engine):
    rows = await _insert(own_engine)
    env_settings = own.model_copy(update={"prune_batch_size": 1})
    done = await asyncio.to_thread(cli, env_settings, "prune")
    assert done.returncode == 0, done.stderr
    assert await _present(own_engine, rows) == {
        "outbox_old_unsent",  # an event still owed to Kafka, however old
        "outbox_new_sent",
        "command_old_applied",  # applied commands are kept for good
        "command_new_rejected",
        "stripe_new",
        "notification_old_pending",  # an email still owed, however old
        "notification_new_sent",
    }
    # One row per transaction here: a progress line per row deleted, then the summary.
    assert re.search(r"prune: outbox: 1 rows deleted so far", done.stderr), done.stderr
    assert re.search(r"prune: sent_notifications: 4 rows deleted so far", done.stderr)
    assert _count(done.stderr, "outbox", "deleted") >= 1
    assert _count(done.stderr, "processed_commands", "deleted") >= 1
    assert _count(done.stderr, "stripe_events", "deleted") >= 1
    assert _count(done.stderr, "sent_notifications", "deleted") >= 4
    assert re.search(r"prune: sent_notifications: deleted \d+ rows claimed before ", done.stderr)
    assert re.search(r"prune: deleted \d+ outbox, \d+ processed_commands, \d+ stripe_events, "
                     r"\d+ sent_notifications, \d+ expiry_reminders", done.stderr), done.stderr


async def test_prune_json_reports_one_object_for_a_cronjob(own, own_engine):
    rows = await _insert(own_engine)
    done = await asyncio.to_thread(cli, own, "prune", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    report = json.loads(line)
    assert (report["command"], report["outcome"], report["dry_run"]) == ("prune", "ok", True)
    assert report["counts"]["outbox"] >= 1 and report["counts"]["stripe_events"] >= 1
    assert report["counts"]["sent_notifications"] >= 4
    assert report["counts"]["expiry_reminders"] >= 0
    assert await _present(own_engine, rows) == set(rows), "a dry run deletes nothing"


async def test_dry_run_counts_and_deletes_nothing(own, own_engine):
    rows = await _insert(own_engine)
    before = await _present(own_engine, rows)
    dry = await asyncio.to_thread(cli, own, "prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert await _present(own_engine, rows) == before == set(rows)
    for table in ("outbox", "processed_commands", "stripe_events", "sent_notifications"):
        assert _count(dry.stderr, table, "would delete") >= 1
    assert _count(dry.stderr, "expiry_reminders", "would delete") >= 0
    assert "dry run, nothing deleted" in dry.stderr
    assert "rows deleted so far" not in dry.stderr


async def _age_command(engine: AsyncEngine, command_id: uuid.UUID, days: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE processed_commands SET processed_at = now() - make_interval(days => :d) "
                 "WHERE command_id = :id"), {"d": days, "id": command_id})
        await conn.execute(
            text("UPDATE outbox SET created_at = now() - make_interval(days => :d), "
                 "sent_at = coalesce(sent_at, now()) - make_interval(days => :d) "
                 "WHERE command_id = :id"), {"d": days, "id": command_id})


async def _rejected_then_funded(
    settings: Settings, engine: AsyncEngine, producer: Any, user: str, age_days: int
) -> ChargeCredits:
    """A charge rejected for want of credits, aged `age_days`, then credits granted: a
    fresh evaluation of the same charge would now apply it."""
    charge = ChargeCredits(user_id=user, payload=ChargePayload(credits=5, reference="b-1"))
    await publish(producer, settings, charge)
    assert (await wait_processed(engine, [charge.id]))[charge.id]["status"] == "rejected"
    await _age_command(engine, charge.id, age_days)
    await prune(engine, settings)
    grant = GrantCredits(user_id=user, payload=GrantPayload(credits=10, reason="funding"))
    await publish(producer, settings, grant)
    await wait_processed(engine, [grant.id])
    return charge


async def _redeliver(settings, engine, producer, user: str, charge: ChargeCredits) -> int:
    """Publish the charge again, then a marker on the same partition; the balance after."""
    marker = GrantCredits(user_id=user, payload=GrantPayload(credits=1, reason="marker"))
    await publish(producer, settings, charge)
    await publish(producer, settings, marker)
    await wait_processed(engine, [marker.id])
    async with engine.connect() as conn:
        balance = await conn.scalar(
            text("SELECT available FROM accounts WHERE user_id = :u"), {"u": user})
    return int(balance or 0)


async def test_redelivered_command_inside_the_window_is_still_deduplicated(
    own, own_engine, own_worker, producer, user_id
):
    inside = own.command_id_retention_days - 1
    charge = await _rejected_then_funded(own, own_engine, producer, user_id, inside)
    assert await _redeliver(own, own_engine, producer, user_id, charge) == 11  # not charged
    stored = await wait_processed(own_engine, [charge.id])
    assert stored[charge.id]["status"] == "rejected"


async def test_a_pruned_id_is_evaluated_anew_which_is_why_the_window_outlives_kafka(
    own, own_engine, own_worker, producer, user_id
):
    outside = own.command_id_retention_days + 1
    charge = await _rejected_then_funded(own, own_engine, producer, user_id, outside)
    assert await _redeliver(own, own_engine, producer, user_id, charge) == 6  # charged now
    with pytest.raises(ValidationError, match="COMMAND_ID_RETENTION_DAYS"):
        Settings(command_id_retention_days=own.kafka_command_retention_days + 13)
    Settings(command_id_retention_days=own.kafka_command_retention_days + 14)
    with pytest.raises(ValidationError, match="redelivered"):
        Settings(kafka_command_retention_days=30)  # the default 30 days no longer suffice


async def test_reconcile_does_not_miss_events_prune_removed(
    own, own_engine, own_worker, producer, user_id
):
    grant = GrantCredits(user_id=user_id, payload=GrantPayload(credits=3, reason="old"))
    await publish(producer, own, grant)
    await wait_processed(own_engine, [grant.id])
    await _age_command(own_engine, grant.id, own.outbox_retention_days + 1)
    await prune(own_engine, own)
    async with own_engine.connect() as conn:
        left = await conn.scalar(
            text("SELECT count(*) FROM outbox WHERE command_id = :id"), {"id": grant.id})
    assert left == 0
    kept = await reconcile(own_engine, events_kept_days=own.outbox_retention_days)
    assert not [d for d in kept if d.check == EVENTS_CHECK and d.subject == str(grant.id)]
    # Without the horizon the same ledger reads as a command that emitted nothing.
    everything = await reconcile(own_engine)
    assert [d for d in everything if d.check == EVENTS_CHECK and d.subject == str(grant.id)]


async def _reminded_batches(
    settings: Settings, engine: AsyncEngine, producer: Any, user: str
) -> dict[str, uuid.UUID]:
    """Three granted batches, each reminded about 400 days ago: one expired past the
    window, one expired within it, one that expires in three days (a membership batch
    reminded about long ahead of its end, say)."""
    grants = [GrantCredits(user_id=user, payload=GrantPayload(credits=1, reason=f"reminded {i}"))
              for i in range(3)]
    for grant in grants:
        await publish(producer, settings, grant)
    await wait_processed(engine, [grant.id for grant in grants])
    window = settings.expiry_reminder_retention_days
    async with engine.begin() as conn:
        ids = (await conn.execute(
            text("SELECT id FROM credit_batches WHERE user_id = :u ORDER BY id"), {"u": user}
        )).scalars().all()
        batches = dict(zip(("expired_long_ago", "expired_recently", "expiring"), ids, strict=True))
        for key, days in (("expired_long_ago", -(window + 1)), ("expired_recently", -(window - 1)),
                          ("expiring", 3)):
            await conn.execute(
                text("UPDATE credit_batches SET expires_at = now() + make_interval(days => :d) "
                     "WHERE id = :id"), {"d": days, "id": batches[key]})
            await conn.execute(
                text("INSERT INTO expiry_reminders (batch_id, user_id, event_id, reminded_at) "
                     "VALUES (:id, :u, :event, now() - make_interval(days => 400))"),
                {"id": batches[key], "u": user, "event": uuid.uuid4()})
    return batches


async def _reminded(engine: AsyncEngine, batches: dict[str, uuid.UUID]) -> set[str]:
    async with engine.connect() as conn:
        kept = set((await conn.execute(
            text("SELECT batch_id FROM expiry_reminders WHERE batch_id = ANY(:ids)"),
            {"ids": list(batches.values())})).scalars())
    return {key for key, batch in batches.items() if batch in kept}


async def test_a_reminder_goes_only_once_its_batch_expired_past_the_window(
    own, own_engine, own_worker, producer, user_id
):
    batches = await _reminded_batches(own, own_engine, producer, user_id)
    dry = await asyncio.to_thread(cli, own, "prune", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["counts"]["expiry_reminders"] >= 1
    assert await _reminded(own_engine, batches) == set(batches), "a dry run deletes nothing"

    done = await asyncio.to_thread(cli, own.model_copy(update={"prune_batch_size": 1}), "prune")
    assert done.returncode == 0, done.stderr
    assert re.search(r"prune: expiry_reminders: deleted \d+ rows of batches expired before ",
                     done.stderr), done.stderr
    assert await _reminded(own_engine, batches) == {"expired_recently", "expiring"}

    # However short the window and however old the reminder, a batch not yet expired
    # keeps its row: it is what stops `remind` from warning about it a second time.
    await prune(own_engine, own.model_copy(update={"expiry_reminder_retention_days": 1}))
    assert await _reminded(own_engine, batches) == {"expiring"}
    due = await due_reminders(own_engine, within_days=7)
    assert not [r for r in due if r.user_id == user_id], "reminded once, ever"


def test_notification_claims_must_outlive_the_events_topic() -> None:
    with pytest.raises(ValidationError, match="NOTIFICATION_RETENTION_DAYS"):
        Settings(notification_retention_days=Settings().kafka_event_retention_days + 13)
    Settings(notification_retention_days=Settings().kafka_event_retention_days + 14)
    with pytest.raises(ValidationError, match="send its email a second time"):
        Settings(kafka_event_retention_days=30)  # the default 30 days no longer suffice
    with pytest.raises(ValidationError):
        Settings(expiry_reminder_retention_days=0)
