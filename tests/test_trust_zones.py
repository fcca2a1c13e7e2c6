"""Trust zones of the command stream, attacked from outside on the real broker.

A plain Kafka producer (a compromised platform service, anyone on the network) tries to
create credits: on the public topic every payment-zone type is dead-lettered; on the
internal topic a command without recorded evidence, or unlike the command its evidence
was recorded for, is dead-lettered too. Nothing reaches the ledger either way.
"""

import uuid

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from devtools.processes import free_port
from ops.topics import provision_topics
from schemas.commands import (
    ChargeCredits,
    ChargePayload,
    ConfirmPurchase,
    ConfirmPurchasePayload,
    GrantCredits,
    GrantPayload,
)
from services.evidence.store import record_evidence
from services.evidence.zones import (
    EVIDENCE_KINDS,
    PUBLIC_COMMANDS,
    Evidence,
    evidence_refusal,
    refused_on_public_topic,
)
from services.ledger.invariant_queries import reconcile
from tests.conftest import ChildProcess, auth, dead_letters, publish, wait_processed
from tests.test_purchases import purchase


async def balance_of(http, user: str) -> dict:
    return (await http.get("/payment/credits/balance", headers=auth(user))).json()


async def processed(engine, command_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(
            text("SELECT count(*) FROM processed_commands WHERE command_id = :id"),
            {"id": command_id}))


async def send_raw(producer, topic: str, command) -> None:
    await producer.send_and_wait(topic, value=command.model_dump_json().encode(),
                                 key=command.user_id.encode())


def confirm_for(user: str, intent: str, amount: int, purchase_id: str | None = None):
    return ConfirmPurchase(
        user_id=user, source="rogue",
        payload=ConfirmPurchasePayload(
            payment_intent_id=intent, purchase_id=purchase_id, amount_received=amount,
            currency="usd", stripe_event_id=f"evt_forged_{uuid.uuid4().hex[:10]}",
        ),
    )


async def test_a_plain_producer_granting_on_the_public_topic_is_dead_lettered(
    http, engine, worker, settings, producer, user_id
):
    marker = uuid.uuid4().hex
    grant = GrantCredits(user_id=user_id, source="rogue",
                         payload=GrantPayload(credits=500, reason=marker))
    await send_raw(producer, settings.commands_topic, grant)
    # A charge behind it on the same partition is still applied: the worker moves on.
    charge = ChargeCredits(user_id=user_id, payload=ChargePayload(credits=1, reference=marker))
    await send_raw(producer, settings.commands_topic, charge)
    done = await wait_processed(engine, [charge.id])
    assert done[charge.id]["error_code"] == "PAY001", "the charge found nothing: no grant"
    reasons = await dead_letters(settings, lambda v: marker.encode() in v and b"grant" in v, 1)
    (reason,) = reasons.values()
    assert reason.startswith("PAY010 credits.grant is not accepted on"), reason
    assert await processed(engine, grant.id) == 0
    assert (await balance_of(http, user_id))["total"] == 0


async def test_a_forged_confirmation_of_an_unpaid_intent_grants_nothing_on_either_topic(
    http, engine, worker, settings, producer, pack, user_id
):
    started = await purchase(http, pack["id"], user_id)
    intent = started["paymentIntentId"]
    public = confirm_for(user_id, intent, 1800, started.get("purchaseId"))
    internal = confirm_for(user_id, intent, 1800, started.get("purchaseId"))
    await send_raw(producer, settings.commands_topic, public)
    await send_raw(producer, settings.internal_commands_topic, internal)
    wanted = {str(public.id).encode(): "public", str(internal.id).encode(): "internal"}
    reasons = await dead_letters(settings, lambda v: any(k in v for k in wanted), 2)
    by_topic = {wanted[next(k for k in wanted if k in raw)]: why for raw, why in reasons.items()}
    assert by_topic["public"].startswith("PAY010 purchase.confirm is not accepted on")
    assert by_topic["internal"] == "PAY010 purchase.confirm has no recorded evidence; not applied"
    assert await processed(engine, public.id) == 0 and await processed(engine, internal.id) == 0
    assert (await balance_of(http, user_id))["total"] == 0
    async with engine.connect() as conn:
        status = await conn.scalar(
            text("SELECT status FROM purchases WHERE payment_intent_id = :pi"), {"pi": intent})
    assert status != "succeeded"


async def test_evidence_binds_the_exact_command_and_a_kind_that_fits_it(
    http, engine, worker, settings, producer, user_id
):
    """Evidence recorded for a grant of 5 does not carry a grant of 500 under the same id;
    evidence of a Stripe event does not carry an admin grant."""
    small = GrantCredits(user_id=user_id, payload=GrantPayload(credits=5, reason="goodwill"))
    async with engine.begin() as conn:
        await record_evidence(conn, [(small, Evidence("admin_request", "ticket-1", "admin-a"))])
    inflated = small.model_copy(update={"payload": GrantPayload(credits=500, reason="goodwill")})
    stripe_backed = GrantCredits(user_id=user_id, payload=GrantPayload(credits=7, reason="evt"))
    async with engine.begin() as conn:
        await record_evidence(conn, [(stripe_backed, Evidence("stripe_event", "evt_1", "x"))])
    await send_raw(producer, settings.internal_commands_topic, inflated)
    await send_raw(producer, settings.internal_commands_topic, stripe_backed)
    ids = {str(inflated.id).encode(), str(stripe_backed.id).encode()}
    reasons = set((await dead_letters(settings, lambda v: any(i in v for i in ids), 2)).values())
    assert reasons == {
        "PAY010 credits.grant differs from the command its evidence was recorded for",
        "PAY010 credits.grant cannot rest on evidence of kind stripe_event",
    }
    # The command the evidence was recorded for is applied, from the internal topic.
    await send_raw(producer, settings.internal_commands_topic, small)
    done = await wait_processed(engine, [small.id])
    assert done[small.id]["status"] == "applied"
    assert (await balance_of(http, user_id))["total"] == 5
    assert await reconcile(engine) == []


async def test_evidence_is_append_only(engine, user_id):
    grant = GrantCredits(user_id=user_id, payload=GrantPayload(credits=1, reason="r"))
    async with engine.begin() as conn:
        await record_evidence(conn, [(grant, Evidence("admin_request", "ticket", "admin"))])
    for statement in ("UPDATE command_evidence SET kind = 'operator_job' WHERE command_id = :id",
                      "DELETE FROM command_evidence WHERE command_id = :id"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"id": grant.id})


async def test_every_payment_zone_type_is_refused_on_the_public_topic_and_needs_evidence():
    """The zone table is total: each command type is public, or has evidence that fits."""
    from schemas.commands import COMMAND_MODELS

    for model in COMMAND_MODELS:
        kind = model.model_fields["type"].default
        if kind in PUBLIC_COMMANDS:
            assert refused_on_public_topic(kind, "payment.commands") is None
            assert evidence_refusal(kind, "u", "f" * 64, None) is None
        else:
            assert refused_on_public_topic(kind, "payment.commands"), kind
            assert EVIDENCE_KINDS[kind], kind
            assert evidence_refusal(kind, "u", "f" * 64, None), kind


async def test_refusals_are_counted_for_the_operator(settings, engine, producer, user_id):
    """`payment_commands_refused_total` is what an operator alerts on."""
    own = settings.model_copy(update={"topic_prefix": f"zone-{uuid.uuid4().hex[:6]}-"})
    await provision_topics(own)
    port = free_port()
    worker = ChildProcess("worker", own.model_copy(update={"metrics_port": port}),
                          name="worker-zones").start()
    try:
        grant = GrantCredits(user_id=user_id, payload=GrantPayload(credits=9, reason="rogue"))
        await send_raw(producer, own.commands_topic, grant)
        unbacked = GrantCredits(user_id=user_id, payload=GrantPayload(credits=9, reason="rogue"))
        await send_raw(producer, own.internal_commands_topic, unbacked)
        backed = GrantCredits(user_id=user_id, payload=GrantPayload(credits=2, reason="ok"))
        await publish(producer, own, backed)
        assert (await wait_processed(engine, [backed.id]))[backed.id]["status"] == "applied"
        await dead_letters(own, lambda v: b"rogue" in v, 2)
        async with httpx.AsyncClient(timeout=5) as client:
            scraped = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
        counted = {
            line.split("{", 1)[1].split("}", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in scraped.splitlines()
            if line.startswith("payment_commands_refused_total{")
        }
        assert counted == {
            'reason="public_topic",type="credits.grant"': 1.0,
            'reason="evidence",type="credits.grant"': 1.0,
        }, counted
    finally:
        worker.stop()


async def test_http_publishes_everything_on_the_internal_topic_with_its_evidence(
    http, engine, worker, user_id
):
    """An admin's grant over HTTP leaves who asked and which request, under its id."""
    key = f"ticket-{uuid.uuid4().hex[:8]}"
    response = await http.post(
        "/payment/credits/grant", json={"userId": user_id, "credits": 3, "reason": "sorry"},
        headers={**auth("support-7", "admin"), "Idempotency-Key": key},
    )
    assert response.status_code == 200, response.text
    command_id = uuid.UUID(response.json()["commandId"])
    async with engine.connect() as conn:
        row = (await conn.execute(
            text("SELECT kind, subject, reference FROM command_evidence WHERE command_id = :id"),
            {"id": command_id})).one()
    assert (row.kind, row.subject) == ("admin_request", "support-7")
    assert f"key={key}" in row.reference and "/payment/credits/grant" in row.reference
    assert (await balance_of(http, user_id))["total"] == 3
