"""What the client decides without a broker: command ids, the outcome an event or a
stored status gives, and when an answer under a command's id is another command's."""

import uuid

import pytest

from pika_payment_client import BrokerSettings, Outcome, command_id
from pika_payment_client.contracts.api import CommandStatusRead, ErrorBody
from pika_payment_client.contracts.commands import (
    ChargeCredits,
    ChargePayload,
    HoldCredits,
    HoldPayload,
    command_fingerprint,
)
from pika_payment_client.contracts.events import (
    BalanceChanged,
    BalanceChangedPayload,
    CommandRejected,
    CreditsCharged,
    CreditsHeld,
    LedgerFactPayload,
    RejectedPayload,
)
from pika_payment_client.outcomes import OutcomeWatcher

BOOKING = "booking-123"
CHARGE = ChargeCredits(id=command_id(BOOKING, "charge"), user_id="u-42",
                       payload=ChargePayload(credits=3, reference=BOOKING))
TRANSACTION = uuid.uuid4()


def test_command_ids_are_the_services_own_derivation() -> None:
    # The id of a booking charge in the service's Kafka contracts (docs/kafka.md).
    assert command_id(BOOKING, "charge") == uuid.UUID("64c4e00b-b12f-5d96-904a-ae7070a29256")
    assert command_id(BOOKING, "charge", "late-fee") != command_id(BOOKING, "charge")


def fact(kind: type[CreditsCharged] | type[CreditsHeld], credits: int = 3, reference: str = BOOKING,
         user: str = "u-42") -> CreditsCharged | CreditsHeld:
    return kind(user_id=user, command_id=CHARGE.id, payload=LedgerFactPayload(
        transaction_id=TRANSACTION, transaction_type="CREDIT_USAGE", credits=credits,
        reference=reference))


def balance(available: int) -> BalanceChanged:
    return BalanceChanged(user_id="u-42", command_id=CHARGE.id, payload=BalanceChangedPayload(
        available=available, held=0, total=available, delta=-3, transaction_id=TRANSACTION,
        transaction_type="CREDIT_USAGE"))


async def settle(*events: object) -> Outcome:
    watcher = OutcomeWatcher(BrokerSettings("127.0.0.1:1"))
    future = watcher.expect(CHARGE.id, CHARGE)
    for event in events:
        watcher.offer(event.model_dump_json().encode())  # type: ignore[attr-defined]
    assert future.done(), "the events did not settle the command"
    return future.result()


async def test_the_fact_then_its_balance_settle_an_applied_charge() -> None:
    outcome = await settle(fact(CreditsCharged), balance(7))

    assert outcome.applied and outcome.transaction_id == TRANSACTION
    assert outcome.balance is not None and outcome.balance.available == 7


async def test_a_rejection_event_settles_with_its_code() -> None:
    rejected = CommandRejected(type="credits.charge.rejected", user_id="u-42", command_id=CHARGE.id,
                               payload=RejectedPayload(code="PAY001", message="short",
                                                       details={"available": 1}))
    outcome = await settle(rejected)

    assert (outcome.status, outcome.code, outcome.details) == ("rejected", "PAY001", {"available": 1})


@pytest.mark.parametrize("other", [
    fact(CreditsCharged, credits=9),
    fact(CreditsCharged, reference="booking-999"),
    fact(CreditsHeld),
    fact(CreditsCharged, user="u-other"),
    CommandRejected(type="credits.hold.rejected", user_id="u-42", command_id=CHARGE.id,
                    payload=RejectedPayload(code="PAY001", message="short")),
])
async def test_events_of_another_command_under_the_same_id_answer_pay012(other: object) -> None:
    outcome = await settle(other, balance(7))

    assert (outcome.status, outcome.code) == ("rejected", "PAY012")


async def test_an_unrelated_or_unreadable_record_settles_nothing() -> None:
    watcher = OutcomeWatcher(BrokerSettings("127.0.0.1:1"))
    future = watcher.expect(CHARGE.id, CHARGE)
    for raw in (b"", b"not json", b"[]", b'{"commandId": "not a uuid"}',
                b'{"commandId": "%s", "type": "credits.charged"}' % str(CHARGE.id).encode()):
        watcher.offer(raw)

    assert not future.done()


def status(**fields: object) -> CommandStatusRead:
    return CommandStatusRead.model_validate({"command_id": CHARGE.id, **fields})


def test_a_stored_result_answers_only_the_command_it_was_stored_for() -> None:
    stored = {"transactionId": str(TRANSACTION), "balance": {"available": 7, "held": 0, "total": 7}}
    own = status(status="applied", type="credits.charge", result=stored,
                 fingerprint=command_fingerprint(CHARGE))
    other = CHARGE.model_copy(update={"payload": ChargePayload(credits=9, reference=BOOKING)})
    hold = HoldCredits(id=CHARGE.id, user_id="u-42", payload=HoldPayload(credits=3, reference=BOOKING))

    applied = Outcome.from_status(own, CHARGE)
    assert applied is not None and applied.applied and applied.learned_from == "status"
    assert applied.balance is not None and applied.balance.available == 7
    for stranger in (other, hold):
        refused = Outcome.from_status(own, stranger)
        assert refused is not None and refused.code == "PAY012"
    assert Outcome.from_status(status(status="pending"), CHARGE) is None


def test_a_stored_rejection_keeps_its_code() -> None:
    rejected = status(status="rejected", type="credits.charge",
                      error=ErrorBody(code="PAY001", message="short"),
                      fingerprint=command_fingerprint(CHARGE))

    outcome = Outcome.from_status(rejected, CHARGE)
    assert outcome is not None and (outcome.status, outcome.code) == ("rejected", "PAY001")


@pytest.mark.parametrize("settings", [
    {"security_protocol": "SASL_SSL"},
    {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u"},
    {"sasl_username": "u"},
    {"bootstrap_servers": ""},
])
def test_broker_settings_that_cannot_log_in_are_refused_when_built(settings: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        BrokerSettings(**{"bootstrap_servers": "kafka:9093", **settings})  # type: ignore[arg-type]


def test_a_sasl_login_is_handed_to_aiokafka_with_tls() -> None:
    options = BrokerSettings("kafka:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                             sasl_username="booking", sasl_password="secret",
                             topic_prefix="staging-").aiokafka_options()

    assert options["sasl_plain_username"] == "booking" and options["ssl_context"] is not None
    assert "secret" not in repr(BrokerSettings("kafka:9093", security_protocol="SASL_SSL",
                                               sasl_mechanism="PLAIN", sasl_username="u",
                                               sasl_password="secret"))
