"""The Python client's `Payments` and `PaymentsHttp` against the real stack: commands go
over the tansu broker to the ledger worker, outcomes come back on `payment.events`
through the relay (or from `GET /payment/commands/{id}`), and the HTTP client talks to
a running ingress.

Each case is something a booking service does, or gets wrong, for real: a charge, a
charge without the credits, the hold → partial capture → release lifecycle, a crash
and a retry of the same booking, the same booking id reused for another amount, a
command a platform service may not publish, and numbers that are not integers.
"""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pika_payment_client import (
    BrokerSettings,
    InvalidCommand,
    OutcomeUnknown,
    PaymentApiError,
    Payments,
    PaymentsHttp,
    command_id,
)
from pika_payment_client.contracts.commands import GrantCredits, GrantPayload
from pika_payment_client.http import ROUTES

from services.settings import Settings
from tests.conftest import ChildProcess, Ingress, dead_letters, token

pytestmark = pytest.mark.timeout(120)


def broker_of(settings: Settings) -> BrokerSettings:
    return BrokerSettings(settings.kafka_bootstrap_servers, topic_prefix=settings.topic_prefix)


@pytest.fixture
async def admin_http(ingress: Ingress) -> AsyncIterator[PaymentsHttp]:
    async with PaymentsHttp(ingress.url, lambda: token("admin-client", "admin")) as client:
        yield client


@pytest.fixture
async def service_http(ingress: Ingress) -> AsyncIterator[PaymentsHttp]:
    async with PaymentsHttp(ingress.url, lambda: token("booking-service", "service")) as client:
        yield client


@pytest.fixture
async def payments(
    settings: Settings, service_http: PaymentsHttp, worker: ChildProcess, relay: ChildProcess
) -> AsyncIterator[Payments]:
    async with Payments(broker_of(settings), source="booking-service", http=service_http) as client:
        yield client


async def funded(admin_http: PaymentsHttp, user_id: str, credits: int) -> None:
    reply = await admin_http.grant(user_id, credits, "client test funding")
    assert reply.model_extra is not None and reply.model_extra["balance"]["available"] == credits


async def test_a_charge_answers_applied_with_the_balance_after_it(
    payments: Payments, admin_http: PaymentsHttp, user_id: str
):
    await funded(admin_http, user_id, 10)
    booking = f"booking-{uuid.uuid4().hex[:8]}"

    handle = await payments.charge(user_id, 3, reference=booking, metadata={"seat": "4B"})
    outcome = await handle.outcome(timeout=20)

    assert handle.command_id == command_id(booking, "charge")
    assert outcome.applied and outcome.learned_from == "events"
    assert (outcome.balance.available, outcome.balance.held, outcome.balance.total) == (7, 0, 7)
    history = await admin_http.history(user_id, types=["CREDIT_USAGE"])
    assert [(item.id, item.reference, item.credits) for item in history.items] == [
        (outcome.transaction_id, booking, -3)
    ]


async def test_a_charge_without_the_credits_answers_pay001_and_changes_nothing(
    payments: Payments, admin_http: PaymentsHttp, user_id: str
):
    await funded(admin_http, user_id, 2)

    outcome = await (await payments.charge(user_id, 5, reference=f"b-{uuid.uuid4()}")).outcome(20)

    assert outcome.status == "rejected" and outcome.code == "PAY001"
    assert outcome.details == {"available": 2, "requested": 5}
    assert (await admin_http.balance(user_id)).available == 2


async def test_the_booking_lifecycle_hold_partial_capture_and_release(
    payments: Payments, admin_http: PaymentsHttp, user_id: str
):
    await funded(admin_http, user_id, 10)
    kept, cancelled = f"booking-{uuid.uuid4().hex[:8]}", f"booking-{uuid.uuid4().hex[:8]}"

    held = await (await payments.hold(user_id, 4, reference=kept)).outcome(20)
    other = await (await payments.hold(user_id, 3, reference=cancelled)).outcome(20)
    captured = await (await payments.capture(user_id, reference=kept, credits=3)).outcome(20)
    released = await (await payments.release(user_id, reference=cancelled,
                                             reason="cancelled")).outcome(20)

    assert held.applied and held.hold_id is not None and held.balance.held == 4
    assert other.balance.available == 3 and other.balance.held == 7
    # Three of four captured, the fourth back with the available credits.
    assert captured.applied and captured.hold_id == held.hold_id
    assert (captured.balance.available, captured.balance.held) == (4, 3)
    assert released.applied and released.hold_id == other.hold_id
    assert (released.balance.available, released.balance.held) == (7, 0)
    assert (await admin_http.balance(user_id)).available == 7


async def test_a_crash_and_retry_of_the_same_booking_changes_nothing(
    settings: Settings, service_http: PaymentsHttp, payments: Payments,
    admin_http: PaymentsHttp, user_id: str,
):
    await funded(admin_http, user_id, 10)
    booking = f"booking-{uuid.uuid4().hex[:8]}"
    first = await (await payments.charge(user_id, 4, reference=booking)).outcome(20)
    # tansu answers a partition's end offset with its last record's offset, not the next
    # one, so a reader starting at the end reads that record again: another event of this
    # user's partition follows the charge, so the retry cannot see the charge's events.
    await admin_http.grant(user_id, 1, "a later change")

    # A new process (the booking service restarted) charges the same booking again.
    async with Payments(broker_of(settings), source="booking-service", http=service_http,
                        fallback_after=0.5) as restarted:
        again = await (await restarted.charge(user_id, 4, reference=booking)).outcome(20)

    # Its events were published before it watched: the stored result answers it.
    assert again.applied and again.learned_from == "status"
    assert again.transaction_id == first.transaction_id
    assert again.balance == first.balance
    assert (await admin_http.balance(user_id)).available == 7
    usage = await admin_http.history(user_id, types=["CREDIT_USAGE"])
    assert len(usage.items) == 1


async def test_the_same_booking_with_another_amount_is_refused_not_applied(
    settings: Settings, payments: Payments, admin_http: PaymentsHttp, user_id: str
):
    await funded(admin_http, user_id, 10)
    booking = f"booking-{uuid.uuid4().hex[:8]}"
    await (await payments.charge(user_id, 2, reference=booking)).outcome(20)

    other = await payments.charge(user_id, 9, reference=booking)
    outcome = await other.outcome(timeout=20)

    # The ledger stored the first charge under this id; that is not this charge's answer.
    assert (outcome.status, outcome.code) == ("rejected", "PAY012")
    reasons = await dead_letters(settings, lambda raw: str(other.command_id).encode() in raw, 1)
    assert any(reason.startswith("PAY012") for reason in reasons.values()), reasons
    assert (await admin_http.balance(user_id)).available == 8
    # A second charge of the same booking is a command of its own when it has a key.
    late = await (await payments.charge(user_id, 1, reference=booking, key="late-fee")).outcome(20)
    assert late.applied and late.balance.available == 7


async def test_a_cancellation_after_the_capture_is_refused_with_pay014(
    payments: Payments, admin_http: PaymentsHttp, user_id: str
):
    await funded(admin_http, user_id, 5)
    booking = f"booking-{uuid.uuid4().hex[:8]}"
    await (await payments.hold(user_id, 5, reference=booking)).outcome(20)
    await (await payments.capture(user_id, reference=booking)).outcome(20)

    late = await (await payments.release(user_id, reference=booking, reason="cancelled")).outcome(20)

    assert (late.status, late.code) == ("rejected", "PAY014")
    assert (await admin_http.balance(user_id)).available == 0


async def test_an_outcome_without_a_watcher_comes_from_the_status_route(
    settings: Settings, service_http: PaymentsHttp, admin_http: PaymentsHttp, user_id: str
):
    await funded(admin_http, user_id, 5)
    async with Payments(broker_of(settings), source="booking-service", http=service_http,
                        watch_outcomes=False) as quiet:
        outcome = await (await quiet.charge(user_id, 5, reference=f"b-{uuid.uuid4()}")).outcome(20)

    assert outcome.applied and outcome.learned_from == "status"
    assert outcome.balance is not None and outcome.balance.available == 0


async def test_an_outcome_nobody_can_answer_times_out_as_unknown(
    settings: Settings, user_id: str, worker: ChildProcess, relay: ChildProcess
):
    async with Payments(broker_of(settings), source="booking-service") as without_http:
        handle = await without_http.charge(user_id, 1, reference=f"b-{uuid.uuid4()}",
                                           key="never-funded")
        # The user has nothing: the rejection comes on the events...
        assert (await handle.outcome(20)).code == "PAY001"
        # ...while an id nobody published has no answer anywhere.
        with pytest.raises(OutcomeUnknown):
            await without_http.outcome(uuid.uuid4(), timeout=1.5)


async def test_a_platform_service_cannot_publish_a_payment_zone_command(
    payments: Payments, user_id: str
):
    grant = GrantCredits(user_id=user_id, payload=GrantPayload(credits=100, reason="free money"))

    with pytest.raises(InvalidCommand, match="not published by platform services"):
        await payments.publish(grant)


@pytest.mark.parametrize("credits", ["5", True, 5.0, 0, -1, 2_000_000_000])
async def test_credits_that_are_not_a_positive_integer_are_refused_before_publishing(
    payments: Payments, user_id: str, credits: object
):
    with pytest.raises(InvalidCommand):
        await payments.charge(user_id, credits, reference="booking-x")  # type: ignore[arg-type]


async def test_a_hold_reference_of_a_dispute_freeze_is_refused(payments: Payments, user_id: str):
    with pytest.raises(InvalidCommand, match="freezes"):
        await payments.hold(user_id, 1, reference="dispute:du_123")


def test_every_route_the_http_client_calls_is_served(ingress: Ingress):
    document = httpx.get(f"{ingress.url}/payment/openapi.json", timeout=10).json()
    served = {(method.upper(), path) for path, item in document["paths"].items() for method in item}

    assert set(ROUTES) <= served, set(ROUTES) - served


async def test_the_client_contracts_are_the_served_ones(service_http: PaymentsHttp):
    check = await service_http.check_contract()

    assert check.identical, (check.differing, check.missing)
    assert check.schema_version == 1


async def test_a_grant_retried_with_its_idempotency_key_is_applied_once(
    admin_http: PaymentsHttp, user_id: str
):
    key = str(uuid.uuid4())
    first = await admin_http.grant(user_id, 5, "goodwill", idempotency_key=key)
    again = await admin_http.grant(user_id, 5, "goodwill", idempotency_key=key)

    assert first.command_id == again.command_id
    assert (await admin_http.balance(user_id)).available == 5
    with pytest.raises(PaymentApiError) as refused:
        await admin_http.grant(user_id, 6, "goodwill", idempotency_key=key)
    assert (refused.value.status, refused.value.code) == (422, "PAY012")


async def test_errors_carry_the_status_and_pay_code(ingress: Ingress, user_id: str):
    async with PaymentsHttp(ingress.url, token(user_id)) as as_user:
        with pytest.raises(PaymentApiError) as refused:
            await as_user.grant(user_id, 5, "I would like some")
        assert (refused.value.status, refused.value.code) == (403, "PAY010")
        with pytest.raises(InvalidCommand):
            await as_user.grant(user_id, "5", "a string")  # type: ignore[arg-type]


async def test_history_pages_through_every_transaction(admin_http: PaymentsHttp, user_id: str):
    for credits in (1, 2, 3):
        await admin_http.grant(user_id, credits, f"grant {credits}")

    items = [item async for item in admin_http.iter_history(user_id, page_size=2)]

    assert [item.credits for item in items] == [3, 2, 1]
