"""Every command the ledger refuses announces its refusal and never blocks its partition;
what it could not store is refused before it is accepted.

The refusal event's type is `<command type>.rejected`; a type missing from the event
contract made the rejection itself fail, and with it the whole batch on every
redelivery: one unknown subscription in a Stripe invoice stopped that partition's
charges. Replayed here with a period grant for a subscription that is not ours,
followed by a charge of another user in the same batch.
"""

import uuid
from datetime import UTC, datetime, timedelta
from typing import get_args

from aiokafka import AIOKafkaProducer

from schemas.commands import (
    COMMAND_MODELS,
    ChargeCredits,
    ChargePayload,
    GrantMembershipPeriod,
    MembershipInvoicePayload,
)
from schemas.events import REJECTABLE
from services.db import make_engine
from services.evidence.trusted_publisher import publish_with_evidence
from services.evidence.zones import Evidence
from services.settings import Settings
from tests.conftest import ChildProcess, auth, wait_processed
from tests.test_http_api import grant_http


def test_every_command_type_has_its_rejection_event():
    kinds = {model.model_fields["type"].default for model in COMMAND_MODELS}

    assert {f"{kind}.rejected" for kind in kinds} == set(get_args(REJECTABLE))


async def test_a_refused_period_grant_is_announced_and_the_batch_goes_on(
    settings: Settings, engine, producer: AIOKafkaProducer, worker: ChildProcess, relay: ChildProcess,
    events,
):
    user = f"u-{uuid.uuid4().hex[:12]}"
    start = datetime.now(UTC)
    grant = GrantMembershipPeriod(user_id=user, payload=MembershipInvoicePayload(
        subscription_id=f"sub_{uuid.uuid4().hex[:10]}", stripe_event_id=f"evt_{uuid.uuid4().hex}",
        invoice_id=f"in_{uuid.uuid4().hex[:10]}", period_start=start,
        period_end=start + timedelta(days=30), amount_paid=1000, currency="usd"))
    # Behind it on the same partition (same user): must not wait behind a failing batch.
    charge = ChargeCredits(user_id=user, payload=ChargePayload(credits=1, reference="after"))
    publisher = make_engine(settings, pool_size=1)
    try:
        await publish_with_evidence(publisher, producer, settings, [
            (grant, Evidence("stripe_event", grant.payload.stripe_event_id, "tests")),
            (charge, Evidence("admin_request", "test", "tests")),
        ])
    finally:
        await publisher.dispose()

    done = await wait_processed(engine, [grant.id, charge.id])

    assert done[grant.id]["status"] == "rejected" and done[grant.id]["error_code"] == "PAY008"
    # The charge behind it was decided (refused for want of credits), not stuck.
    assert done[charge.id]["error_code"] == "PAY001"
    [announced] = await events.wait_for(lambda e: e.get("commandId") == str(grant.id))
    assert announced["type"] == "membership.grant_period.rejected"
    assert announced["payload"]["code"] == "PAY008"


async def test_text_postgres_cannot_store_is_refused_at_the_door_and_nothing_moves(
    http, user_id: str
):
    assert (await grant_http(http, user_id, 5)).status_code == 200
    refused = await http.post("/payment/commands/", headers=auth("bookings", "service"), json={
        "id": str(uuid.uuid4()), "type": "credits.charge", "userId": user_id,
        "payload": {"credits": 1, "reference": "booking-1", "metadata": {"note": "a\u0000b"}}})

    # Before: accepted, then the ledger's insert failed (PAY500, dead-lettered).
    assert (refused.status_code, refused.json()["code"]) == (422, "PAY007"), refused.text
    balance = await http.get("/payment/credits/balance", params={"userId": user_id},
                             headers=auth("ops", "admin"))
    assert balance.json()["available"] == 5
