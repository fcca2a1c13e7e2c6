"""Email notifications end to end: events on the broker → notify worker → a real SMTP server.

The notify worker runs as a child process (`pika-payment notify`) against an aiosmtpd
server in this process. Recipients are unique per test, so mail from other tests'
events (the worker reads the topic from the start) never counts here.
"""

import asyncio
import email
import email.policy
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiosmtpd.controller import Controller
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from devtools.processes import free_port
from schemas.commands import GrantCredits, GrantPayload
from schemas.events import (
    EventEnvelope,
    MembershipActivated,
    MembershipPayload,
    MembershipRenewed,
    PaymentFailed,
    PaymentPayload,
    PaymentRefunded,
    ReceiptPayload,
    ReceiptRequested,
)
from services.settings import Settings
from tests.conftest import ROOT, ChildProcess, publish, settings_env, wait_processed

CARD_OR_STRIPE = re.compile(r"\b\d{13,19}\b|\b(pi|ch|cus|pm|card)_\w+|stripe", re.I)


@dataclass
class Mail:
    recipients: list[str]
    message: EmailMessage

    def part(self, kind: str) -> str:
        body = self.message.get_body((kind,))
        assert body is not None, f"no text/{kind} part"
        return str(body.get_content())


class Inbox:
    """aiosmtpd handler: keeps what arrives; `refuse-*` is 550, `busy-*` is 451 forever."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("refuse-"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("busy-"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.mails.append(Mail(list(envelope.rcpt_tos), parsed))
        return "250 Message accepted"

    def to(self, address: str) -> list[Mail]:
        with self.lock:
            return [m for m in self.mails if address in m.recipients]

    async def wait_for(self, address: str, count: int = 1, timeout: float = 30) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.to(address)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)


class SmtpServer:
    """A real SMTP server on a fixed port that can go down and come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller:
            self.controller.stop()
            self.controller = None


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def notify(settings: Settings, smtp: SmtpServer) -> Iterator[ChildProcess]:
    configured = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_timeout": 5.0,
            "notify_retry_base_seconds": 0.3,
            "notify_retry_max_seconds": 1.0,
            "notify_max_attempts": 5,
        }
    )
    child = ChildProcess("notify", configured).start()
    yield child
    child.stop()


def address(tag: str = "") -> str:
    return f"{tag}{uuid.uuid4().hex[:12]}@example.test"


def receipt(user: str, email_address: str | None, **changes: Any) -> ReceiptRequested:
    fields: dict[str, Any] = {
        "purchase_id": uuid.uuid4(),
        "pack_id": "gold",
        "pack_name": "<Gold & Co>",
        "credits": 50,
        "bonus_credits": 5,
        "amount": 4999,
        "currency": "usd",
        "email": email_address,
        "balance_after": 62,
    }
    return ReceiptRequested(user_id=user, payload=ReceiptPayload(**{**fields, **changes}))


async def send_events(producer: AIOKafkaProducer, settings: Settings, *events: EventEnvelope) -> None:
    for event in events:
        await producer.send_and_wait(
            settings.events_topic, value=event.model_dump_json().encode(), key=event.user_id.encode()
        )


async def notification_rows(engine: AsyncEngine, event_id: uuid.UUID) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT * FROM sent_notifications WHERE event_id = :id"), {"id": event_id}
        )
        return [dict(r) for r in rows.mappings()]


async def wait_row(
    engine: AsyncEngine, event_id: uuid.UUID, done: Callable[[dict[str, Any]], bool],
    timeout: float = 30,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await notification_rows(engine, event_id)
        if (rows and done(rows[0])) or time.monotonic() > deadline:
            assert rows, f"no notification row for event {event_id}"
            return rows[0]
        await asyncio.sleep(0.05)


async def add_purchase_email(engine: AsyncEngine, user: str, email_address: str) -> uuid.UUID:
    purchase_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO credit_packs (id, name, credits, price_minor, currency) "
            "VALUES ('notify-test', 'Notify test', 50, 4999, 'usd') ON CONFLICT DO NOTHING"
        ))
        await conn.execute(
            text(
                "INSERT INTO purchases (id, user_id, pack_id, credits, bonus_credits, amount_minor, "
                "currency, status, email) VALUES (:id, :u, 'notify-test', 50, 0, 4999, 'usd', "
                "'succeeded', :email)"
            ),
            {"id": purchase_id, "u": user, "email": email_address},
        )
    return purchase_id


async def test_purchase_receipt_arrives_once_with_text_and_html(
    settings, engine, producer, smtp, notify, user_id
):
    to = address()
    event = receipt(user_id, to)
    await send_events(producer, settings, event)
    (mail,) = await smtp.inbox.wait_for(to)
    assert mail.message["Subject"] == "Your receipt: <Gold & Co>"
    assert mail.message["From"] == settings.smtp_from
    assert str(event.id) in mail.message["Message-ID"]
    assert mail.message.get_content_type() == "multipart/alternative"
    plain, html = mail.part("plain"), mail.part("html")
    for line in ("Credits:       50", "Bonus credits: 5", "Total added:   55",
                 "Amount paid:   49.99 USD", "New balance:   62 credits"):
        assert line in plain
    assert "<strong>49.99 USD</strong>" in html
    assert "&lt;Gold &amp; Co&gt;" in html and "<Gold" not in html, "HTML escapes values"
    assert not CARD_OR_STRIPE.search(plain + html)
    row = await wait_row(engine, event.id, lambda r: r["status"] == "sent")
    assert (row["template"], row["recipient"], row["status"]) == ("receipt", to, "sent")
    assert row["event"] is None, "the event (with the address) is not kept once sent"
    await asyncio.sleep(1.0)
    assert len(smtp.inbox.to(to)) == 1


async def test_an_event_delivered_three_times_sends_one_email(
    settings, engine, producer, smtp, notify, user_id
):
    to = address()
    event = receipt(user_id, to)
    await send_events(producer, settings, event)
    assert len(await smtp.inbox.wait_for(to)) == 1
    await wait_row(engine, event.id, lambda r: r["status"] == "sent")
    # Redelivered after it was sent, then again back to back (one fetched batch).
    await send_events(producer, settings, event, event)
    # Same key, same partition: once this later event's email is in, the copies were read.
    sentinel = receipt(user_id, to, pack_name="Sentinel")
    await send_events(producer, settings, sentinel)
    await smtp.inbox.wait_for(to, count=2)
    await asyncio.sleep(0.5)
    mails = smtp.inbox.to(to)
    subjects = sorted(m.message["Subject"] for m in mails)
    assert subjects == ["Your receipt: <Gold & Co>", "Your receipt: Sentinel"]


async def test_smtp_down_then_up_delivers_once(settings, engine, producer, smtp, notify, user_id):
    to = address()
    event = receipt(user_id, to, credits=10, bonus_credits=0, amount=1000, balance_after=10)
    smtp.stop()
    try:
        await send_events(producer, settings, event)
        row = await wait_row(engine, event.id, lambda r: r["attempts"] >= 2)
        assert row["status"] == "pending" and row["attempts"] >= 2, row
        assert "Connect" in (row["last_error"] or ""), row["last_error"]
    finally:
        smtp.start()
    mails = await smtp.inbox.wait_for(to)
    assert len(mails) == 1
    assert "Amount paid:   10.00 USD" in mails[0].part("plain")
    row = await wait_row(engine, event.id, lambda r: r["status"] == "sent")
    assert row["status"] == "sent"
    await asyncio.sleep(1.5)
    assert len(smtp.inbox.to(to)) == 1


def payment(purchase_id: uuid.UUID, **extra: Any) -> PaymentPayload:
    return PaymentPayload(
        purchase_id=purchase_id, pack_id="notify-test", payment_intent_id="pi_3SecretIntent",
        amount=4999, currency="usd", credits=50, **extra,
    )


async def test_failure_and_refund_go_to_the_purchase_email_or_are_skipped(
    settings, engine, producer, smtp, notify, user_id
):
    to = address()
    purchase = await add_purchase_email(engine, user_id, to)
    failed = PaymentFailed(
        user_id=user_id,
        payload=payment(purchase, code="PAY002", failure_code="card_declined", attempt=2),
    )
    refunded = PaymentRefunded(user_id=user_id, payload=payment(purchase, refunded=1500))
    stranger = PaymentFailed(user_id=f"{user_id}-nomail", payload=payment(uuid.uuid4(), code="PAY002"))
    await send_events(producer, settings, failed, refunded, stranger)
    mails = await smtp.inbox.wait_for(to, count=2)
    by_subject = {m.message["Subject"]: m for m in mails}
    assert set(by_subject) == {"Your payment did not go through", "Your refund"}
    dunning = by_subject["Your payment did not go through"].part("plain")
    assert "49.99 USD" in dunning and "PAY002" in dunning and "attempt 2" in dunning
    assert "What to do next" in dunning
    refund = by_subject["Your refund"].part("plain")
    assert "Refunded so far: 15.00 USD of 49.99 USD paid." in refund
    for mail in mails:
        assert not CARD_OR_STRIPE.search(mail.part("plain") + mail.part("html"))
    skipped = await wait_row(engine, stranger.id, lambda r: r["status"] == "skipped")
    assert skipped["status"] == "skipped" and skipped["recipient"] is None
    assert "no email" in skipped["last_error"]


def membership(email_address: str | None, **changes: Any) -> MembershipPayload:
    fields: dict[str, Any] = {
        "membership_id": f"mem_{uuid.uuid4().hex[:8]}",
        "plan_id": "pro-monthly",
        "plan_name": "<Pro & Co>",
        "period_start": datetime(2025, 3, 1, tzinfo=UTC),
        "period_end": datetime(2025, 4, 1, tzinfo=UTC),
        "credits_granted": 120,
        "amount": 1999,
        "currency": "usd",
        "email": email_address,
        "balance_after": 135,
    }
    return MembershipPayload(**{**fields, **changes})


async def test_membership_receipts_for_activation_and_renewal(
    settings, engine, producer, smtp, notify, user_id
):
    to = address()
    renewed = MembershipRenewed(user_id=user_id, payload=membership(to))
    # No address in the event: the user's latest purchase email; no balance: no balance line.
    stored_to = address()
    other_user = f"{user_id}-member"
    await add_purchase_email(engine, other_user, stored_to)
    activated = MembershipActivated(user_id=other_user, payload=membership(
        None, plan_name="Basic", period_start=datetime(2025, 1, 15, 23, 30, tzinfo=UTC),
        period_end=datetime(2025, 2, 15, 23, 30, tzinfo=UTC), credits_granted=40,
        amount=1000, currency="jpy", balance_after=None,
    ))
    nobody = MembershipActivated(user_id=f"{user_id}-nomail", payload=membership(None))
    await send_events(producer, settings, renewed, activated, nobody)

    (mail,) = await smtp.inbox.wait_for(to)
    assert mail.message["Subject"] == "Your membership was renewed: <Pro & Co>"
    assert str(renewed.id) in mail.message["Message-ID"]
    plain, html = mail.part("plain"), mail.part("html")
    assert "Your membership has been renewed." in plain and "active" not in plain
    for line in ("Plan:            <Pro & Co>", "Period:          2025-03-01 to 2025-04-01",
                 "Credits granted: 120", "Amount paid:     19.99 USD",
                 "New balance:     135 credits", f"Membership {renewed.payload.membership_id}"):
        assert line in plain
    assert "<strong>19.99 USD</strong>" in html and "2025-03-01 to 2025-04-01" in html
    assert "&lt;Pro &amp; Co&gt;" in html and "<Pro" not in html, "HTML escapes values"
    assert not CARD_OR_STRIPE.search(plain + html)

    (mail,) = await smtp.inbox.wait_for(stored_to)
    assert mail.message["Subject"] == "Your membership is active: Basic"
    plain, html = mail.part("plain"), mail.part("html")
    assert "Welcome: your membership is active." in plain and "renewed" not in plain
    for line in ("Plan:            Basic", "Period:          2025-01-15 to 2025-02-15",
                 "Credits granted: 40", "Amount paid:     1,000 JPY"):
        assert line in plain
    assert "New balance" not in plain and "New balance" not in html
    assert "<strong>1,000 JPY</strong>" in html

    for event, recipient in ((renewed, to), (activated, stored_to)):
        row = await wait_row(engine, event.id, lambda r: r["status"] == "sent")
        assert (row["template"], row["recipient"], row["status"]) == (
            "membership", recipient, "sent")
    skipped = await wait_row(engine, nobody.id, lambda r: r["status"] == "skipped")
    assert skipped["status"] == "skipped" and "no email" in skipped["last_error"]
    await asyncio.sleep(1.0)
    assert len(smtp.inbox.to(to)) == 1 and len(smtp.inbox.to(stored_to)) == 1


async def test_a_failed_membership_renewal_sends_a_dunning_notice_to_the_member(
    settings, engine, producer, smtp, notify, user_id
):
    to = address()
    failed = PaymentFailed(user_id=user_id, payload=PaymentPayload(
        membership_id=uuid.uuid4(), plan_id="plan_pro", plan_name="Pro monthly",
        invoice_id="in_1Dunning", amount=2900, currency="usd", credits=30, code="PAY002",
        failure_code="card_declined", attempt=3, email=to,
    ))
    await send_events(producer, settings, failed)
    (mail,) = await smtp.inbox.wait_for(to)
    assert mail.message["Subject"] == "Your membership payment did not go through"
    plain, html = mail.part("plain"), mail.part("html")
    assert 'for "Pro monthly"' in plain and "29.00 USD" in plain and "attempt 3" in plain
    assert "update your card" in plain and "pack" not in plain
    assert f"Membership {failed.payload.membership_id}, invoice in_1Dunning" in plain
    assert "Pro monthly" in html and "attempt 3" in html
    row = await wait_row(engine, failed.id, lambda r: r["status"] == "sent")
    assert (row["template"], row["recipient"]) == ("payment_failed", to)


def test_membership_period_must_end_after_it_starts():
    with pytest.raises(ValueError, match="periodEnd"):
        membership(None, period_end=datetime(2025, 3, 1, tzinfo=UTC))
    with pytest.raises(ValueError):
        membership(None, period_start=datetime(2025, 3, 1))  # naive: not aware


async def dead_letters(settings: Settings, event_ids: set[str], timeout: float = 20) -> dict[str, dict]:
    consumer = AIOKafkaConsumer(
        settings.events_dlq_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest", group_id=None,
    )
    await consumer.start()
    found: dict[str, dict] = {}
    try:
        deadline = time.monotonic() + timeout
        while len(found) < len(event_ids) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    headers = {k: v.decode() for k, v in record.headers}
                    for event_id in event_ids:
                        if event_id.encode() in record.value:
                            found[event_id] = headers
    finally:
        await consumer.stop()
    return found


async def test_refused_and_always_deferred_emails_are_dead_lettered_without_blocking_others(
    settings, engine, producer, smtp, notify, user_id
):
    refused = receipt(user_id, address("refuse-"))
    deferred = receipt(user_id, address("busy-"))
    fine_to = address()
    fine = receipt(f"{user_id}-other", fine_to)
    await send_events(producer, settings, refused, deferred, fine)
    assert len(await smtp.inbox.wait_for(fine_to)) == 1, "others' mail is not held up"
    assert (await notification_rows(engine, deferred.id))[0]["status"] == "pending"
    found = await dead_letters(settings, {str(refused.id), str(deferred.id)})
    assert set(found) == {str(refused.id), str(deferred.id)}
    assert "550" in found[str(refused.id)]["x-dlq-reason"]
    assert found[str(refused.id)]["x-attempts"] == "1", "a final refusal is not retried"
    assert found[str(deferred.id)]["x-attempts"] == "5", "NOTIFY_MAX_ATTEMPTS tries"
    assert "451" in found[str(deferred.id)]["x-dlq-reason"]
    for event in (refused, deferred):
        row = await wait_row(engine, event.id, lambda r: r["status"] == "failed")
        assert row["status"] == "failed"


async def run_remind(settings: Settings) -> str:
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "ops.cli", "remind"], env=settings_env(settings),
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


async def expiring_events_of(settings: Settings, user: str) -> list[dict]:
    consumer = AIOKafkaConsumer(
        settings.events_topic, bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest", group_id=None,
    )
    await consumer.start()
    try:
        found: list[dict] = []
        idle = 0
        while idle < 5:
            batch = await consumer.getmany(timeout_ms=200)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for record in records:
                    event = json.loads(record.value)
                    if event.get("type") == "credits.expiring" and event.get("userId") == user:
                        found.append(event)
        return found
    finally:
        await consumer.stop()


async def test_remind_sends_one_reminder_per_user_and_never_twice(
    settings, engine, producer, worker, smtp, notify, user_id
):
    to = address()
    await add_purchase_email(engine, user_id, to)
    now = datetime.now(UTC)
    grants = [
        GrantCredits(user_id=user_id, payload=GrantPayload(
            credits=credits, reason="test", expires_at=now + timedelta(days=days)))
        for credits, days in ((3, 2), (4, 5), (9, 30))
    ]
    await publish(producer, settings, *grants)
    done = await wait_processed(engine, [g.id for g in grants])
    assert {d["status"] for d in done.values()} == {"applied"}
    await run_remind(settings)
    (mail,) = await smtp.inbox.wait_for(to)
    assert mail.message["Subject"] == "7 credits expire within 7 days"
    plain = mail.part("plain")
    assert "3 credits on" in plain and "4 credits on" in plain and "9 credits" not in plain
    async with engine.connect() as conn:
        reminded = (await conn.execute(
            text("SELECT count(*), count(DISTINCT event_id) FROM expiry_reminders WHERE user_id = :u"),
            {"u": user_id},
        )).one()
    assert tuple(reminded) == (2, 1), "both batches, one event"
    await run_remind(settings)
    events = await expiring_events_of(settings, user_id)
    assert len(events) == 1, "the second run publishes nothing for these batches"
    assert sorted(b["remaining"] for b in events[0]["payload"]["batches"]) == [3, 4]
    await asyncio.sleep(1.0)
    assert len(smtp.inbox.to(to)) == 1
