"""Attacks on the money, replayed from outside on the real stack (docs/attacks.md).

Each test does what an attacker (a customer, a compromised service) or an unlucky
order of events would do: HTTP with JWTs, Kafka wire JSON, events signed with the
webhook secret as Stripe would send them. Afterwards it checks the balance, the ledger
and `reconcile`: nobody holds a credit that nobody paid for.
"""

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from adapters.stripe.events import envelope_of
from schemas.commands import ChargeCredits, ChargePayload, GrantCredits, GrantPayload
from services.ledger.invariant_queries import reconcile
from tests.conftest import auth, dead_letters, fresh_auth, publish, wait_processed
from tests.test_purchases import bought, dispute_event, intent_event, post_event, refund_event

SERVICE = fresh_auth("booking-service", "service")
ADMIN = fresh_auth("support-admin", "admin")


async def send(http, user: str, kind: str, payload: dict, headers=SERVICE, **extra) -> Any:
    body = {"id": str(uuid.uuid4()), "type": kind, "userId": user, "payload": payload, **extra}
    return await http.post("/payment/commands/", json=body, headers=headers)


async def until(http, user: str, done: Callable[[dict], bool], timeout: float = 20) -> dict:
    """The balance once `done(balance)` holds (or the last one seen)."""
    deadline = time.monotonic() + timeout
    while True:
        balance = (await http.get("/payment/credits/balance", headers=auth(user))).json()
        if done(balance) or time.monotonic() > deadline:
            return balance
        await asyncio.sleep(0.1)


async def ledger(engine, user: str) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT type, credits FROM ledger_transactions WHERE user_id = :u ORDER BY seq"),
            {"u": user},
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def purchase_debt(engine, intent: str) -> tuple[int, int, int]:
    """(owed, clawed, shortfall) of the purchase of this PaymentIntent."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            text("SELECT owed_credits, clawed_credits, shortfall_credits FROM purchases "
                 "WHERE payment_intent_id = :pi"), {"pi": intent})).one()
    return (row[0], row[1], row[2])


async def shortfall(engine, intent: str) -> int:
    """What the purchase still owes (the column that predates `owed_credits`)."""
    async with engine.connect() as conn:
        return int(await conn.scalar(
            text("SELECT shortfall_credits FROM purchases WHERE payment_intent_id = :pi"),
            {"pi": intent}))


async def delivered(http, engine, event: dict) -> dict:
    """Post a signed Stripe event and wait until the worker applied its command."""
    response = await post_event(http, event)
    assert response.status_code == 200, response.text
    command_id = envelope_of(event)["id"]
    done = await wait_processed(engine, [command_id])
    return done[command_id]


async def dispute(http, engine, intent: str, outcome: str | None = None,
                  dispute_id: str | None = None) -> str:
    """Open (or close with `outcome`) a dispute and wait until the worker applied it."""
    dispute_id = dispute_id or f"dp_{uuid.uuid4().hex[:10]}"
    kind, status = ("closed", outcome) if outcome else ("created", "needs_response")
    await delivered(http, engine, dispute_event(intent, dispute_id, kind, status))
    return dispute_id


async def booking_hold(http, user: str, credits: int, reference: str) -> str:
    held = await send(http, user, "credits.hold", {"credits": credits, "reference": reference})
    assert held.status_code == 200, held.text
    return held.json()["holdId"]


# --- 1. held credits escape a chargeback or a refund --------------------------------------

async def test_credits_held_through_a_lost_chargeback_are_frozen_on_release_and_taken(
    http, pack, engine, worker, user_id
):
    intent = await bought(http, pack["id"], user_id)  # 20 + 3 bonus credits, paid 18.00
    hold = await booking_hold(http, user_id, 23, "booking-chargeback")
    dispute_id = await dispute(http, engine, intent)
    released = await send(http, user_id, "credits.release", {"holdId": hold})
    assert released.status_code == 200, released.text
    assert released.json()["balance"] == {"available": 0, "held": 23, "total": 23}, (
        "the released credits join the dispute's freeze instead of becoming spendable"
    )
    spend = await send(http, user_id, "credits.charge", {"credits": 1, "reference": "b-2"})
    assert spend.status_code == 402
    await dispute(http, engine, intent, "lost", dispute_id)
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (0, 0)
    assert await purchase_debt(engine, intent) == (23, 23, 0)
    assert ("PURCHASE_REVERSAL", 23) in await ledger(engine, user_id)
    assert await reconcile(engine) == []


async def test_a_won_chargeback_gives_back_what_was_frozen_while_held(
    http, pack, engine, worker, user_id
):
    intent = await bought(http, pack["id"], user_id)
    hold = await booking_hold(http, user_id, 20, "booking-won")
    dispute_id = await dispute(http, engine, intent)
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (0, 23), "the 3 spendable froze at once"
    released = await send(http, user_id, "credits.release", {"holdId": hold})
    assert released.json()["balance"] == {"available": 0, "held": 23, "total": 23}
    await dispute(http, engine, intent, "won", dispute_id)
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (23, 0)
    assert await purchase_debt(engine, intent) == (0, 0, 0)
    assert await reconcile(engine) == []


async def test_credits_held_through_a_full_refund_pay_the_purchase_back_when_released(
    http, pack, engine, worker, user_id
):
    intent = await bought(http, pack["id"], user_id)
    hold = await booking_hold(http, user_id, 23, "booking-refund")
    await delivered(http, engine, refund_event(intent, 1800))  # nothing spendable to take
    released = await send(http, user_id, "credits.release", {"holdId": hold})
    assert released.status_code == 200, released.text
    assert released.json()["balance"]["total"] == 0, "the released 23 pay the refunded purchase"
    assert await purchase_debt(engine, intent) == (23, 23, 0)
    entries = await ledger(engine, user_id)
    assert entries[-2:] == [("CREDIT_RELEASE", 23), ("PURCHASE_REVERSAL", 23)]
    assert await reconcile(engine) == []


async def test_a_refunded_charge_of_a_charged_back_purchase_pays_its_debt(
    http, pack, engine, worker, user_id
):
    intent = await bought(http, pack["id"], user_id)
    charged = await send(http, user_id, "credits.charge", {"credits": 5, "reference": "b-spent"})
    assert charged.status_code == 200
    dispute_id = await dispute(http, engine, intent)
    await dispute(http, engine, intent, "lost", dispute_id)
    assert (await until(http, user_id, lambda b: b["total"] == 0))["total"] == 0
    refund = await send(http, user_id, "credits.refund",
                        {"transactionId": charged.json()["transactionId"], "reason": "cancelled"})
    assert refund.status_code == 200, refund.text
    assert refund.json()["balance"]["total"] == 0, "the refunded 5 pay the purchase's debt"
    assert await purchase_debt(engine, intent) == (23, 23, 0)
    assert await reconcile(engine) == []


# --- 7. freezes are not holds a service may touch -------------------------------------------

async def test_a_service_can_neither_release_capture_nor_preempt_a_freeze(
    http, pack, engine, worker, settings, producer, user_id
):
    dispute_id = f"dp_{uuid.uuid4().hex[:10]}"
    intent = await bought(http, pack["id"], user_id)
    # Pre-placing a hold with the dispute's reference would make the freeze a no-op.
    squat = await send(http, user_id, "credits.hold",
                       {"credits": 1, "reference": f"dispute:{dispute_id}"})
    assert squat.status_code == 422 and squat.json()["code"] == "PAY007"
    await dispute(http, engine, intent, dispute_id=dispute_id)
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (0, 23)
    async with engine.connect() as conn:
        freeze = await conn.scalar(text("SELECT id FROM holds WHERE user_id = :u AND kind = 'freeze'"),
                                   {"u": user_id})
    for kind, target in (("credits.release", {"holdId": str(freeze)}),
                         ("credits.capture", {"holdId": str(freeze)})):
        refused = await send(http, user_id, kind, target)
        assert refused.status_code == 403 and refused.json()["code"] == "PAY010", refused.text
    by_reference = await send(http, user_id, "credits.release",
                              {"reference": f"dispute:{dispute_id}"})
    assert by_reference.status_code == 422 and by_reference.json()["code"] == "PAY007"
    # The same over Kafka: a release naming the freeze is rejected by the worker.
    release = {"id": str(uuid.uuid4()), "type": "credits.release", "userId": user_id,
               "source": "rogue", "payload": {"holdId": str(freeze)}}
    await producer.send_and_wait(settings.commands_topic, value=json.dumps(release).encode(),
                                 key=user_id.encode())
    done = await wait_processed(engine, [uuid.UUID(release["id"])])
    assert done[uuid.UUID(release["id"])]["error_code"] == "PAY010"
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (0, 23)
    assert await reconcile(engine) == []


# --- 8. command ids cannot be pre-claimed or reused with another meaning --------------------

async def test_a_grant_reusing_a_charges_id_is_refused_not_answered_with_the_charge(
    http, engine, worker, settings, producer, user_id
):
    funded = await send(http, user_id, "credits.grant", {"credits": 10, "reason": "welcome"},
                        headers=ADMIN)
    assert funded.status_code == 200
    charge_id = str(uuid.uuid4())
    first = await send(http, user_id, "credits.charge", {"credits": 4, "reference": "b-1"},
                       id=charge_id)
    assert first.status_code == 200
    again = await send(http, user_id, "credits.charge", {"credits": 4, "reference": "b-1"},
                       id=charge_id)
    assert again.status_code == 200 and again.json() == first.json(), "a retry is answered"
    for kind, payload, headers in (
        ("credits.grant", {"credits": 400, "reason": "reused id"}, ADMIN),
        ("credits.charge", {"credits": 1, "reference": "b-1"}, SERVICE),  # same type, new payload
    ):
        reused = await send(http, user_id, kind, payload, headers=headers, id=charge_id)
        assert reused.status_code == 422 and reused.json()["code"] == "PAY012", reused.text
    # Over Kafka: the reused id goes to the dead-letter topic with the reason.
    marker = uuid.uuid4().hex
    grant = GrantCredits(id=uuid.UUID(charge_id), user_id=user_id,
                         payload=GrantPayload(credits=400, reason=marker))
    other_user = ChargeCredits(id=uuid.UUID(charge_id), user_id=f"{user_id}-b",
                               payload=ChargePayload(credits=1, reference=marker))
    await publish(producer, settings, grant, other_user)
    reasons = list((await dead_letters(settings, lambda v: marker.encode() in v, 2)).values())
    assert len(reasons) == 2 and all(
        r.startswith("PAY012 command id reused with another ") for r in reasons
    ), reasons
    assert any("type" in r for r in reasons) and any("user" in r for r in reasons), reasons
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert balance["total"] == 6
    assert await ledger(engine, user_id) == [("ADJUSTMENT", 10), ("CREDIT_USAGE", 4)]
    assert await reconcile(engine) == []


async def test_a_claimed_expiry_id_cannot_keep_a_batch_from_expiring(
    http, engine, worker, settings, producer, user_id
):
    from schemas.commands import command_id_for
    from tests.test_cli import cli

    soon = time.time() + 2
    expires = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(soon))
    granted = await send(http, user_id, "credits.grant",
                         {"credits": 7, "reason": "short-lived", "expiresAt": expires},
                         headers=ADMIN)
    assert granted.status_code == 200, granted.text
    batch = granted.json()["batchId"]
    # The id the expiry job used to derive for this batch, claimed first by a service.
    squat = ChargeCredits(id=command_id_for("expire-batch", batch), user_id=user_id,
                          payload=ChargePayload(credits=1, reference="squat"))
    await publish(producer, settings, squat)
    await wait_processed(engine, [squat.id])
    await asyncio.sleep(max(0.0, soon - time.time()) + 0.5)
    done = cli(settings, "expire")
    assert done.returncode == 0, done.stderr
    balance = await until(http, user_id, lambda b: b["total"] == 0)
    assert balance["total"] == 0, "the batch expired whatever ids were claimed before"
    assert await ledger(engine, user_id) == [("ADJUSTMENT", 7), ("CREDIT_USAGE", 1),
                                             ("CREDIT_EXPIRY", 6)]
    assert await reconcile(engine) == []


# --- 9. shortfalls counted once; a late confirmation of a refunded purchase ------------------

async def test_partial_refunds_count_what_is_owed_once(http, pack, engine, worker, user_id):
    intent = await bought(http, pack["id"], user_id)
    spent = await send(http, user_id, "credits.charge", {"credits": 20, "reference": "b-20"})
    assert spent.status_code == 200
    await delivered(http, engine, refund_event(intent, 900))  # owes 11: takes the 3 left, 8 short
    assert await shortfall(engine, intent) == 8
    await delivered(http, engine, refund_event(intent, 1800))  # owes all 23: 20 short, not 28
    assert await shortfall(engine, intent) == 20
    assert await purchase_debt(engine, intent) == (23, 3, 20)
    assert await reconcile(engine) == []


async def test_a_late_confirmation_of_a_refunded_purchase_is_already_applied(
    http, pack, engine, worker, user_id
):
    intent = await bought(http, pack["id"], user_id)
    await post_event(http, refund_event(intent, 1800))
    await until(http, user_id, lambda b: b["total"] == 0)
    late = intent_event(intent, user_id, 1800)  # a new event id: Stripe's late duplicate
    done = await delivered(http, engine, late)
    assert done["status"] == "applied" and done["result"]["already"], done
    assert [t for t in await ledger(engine, user_id) if t[0] == "CREDIT_PURCHASE"] == [
        ("CREDIT_PURCHASE", 20)
    ]
    assert (await until(http, user_id, lambda b: True))["total"] == 0
    assert await reconcile(engine) == []


# --- Stripe's events out of order: refunds and disputes before the payment ---------------

async def started(http, pack_id: str, user: str) -> str:
    """A purchase whose PaymentIntent exists but whose payment has not reached us."""
    from tests.test_purchases import purchase

    return (await purchase(http, pack_id, user))["paymentIntentId"]


async def test_a_refund_that_arrives_before_the_payment_is_taken_from_its_grant(
    http, pack, engine, worker, user_id
):
    intent = await started(http, pack["id"], user_id)
    early = await delivered(http, engine, refund_event(intent, 1800))
    assert early["status"] == "applied", early
    paid = await delivered(http, engine, intent_event(intent, user_id, 1800))
    assert paid["status"] == "applied", paid
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert balance["total"] == 0, "the money went back: the grant pays it at once"
    assert await ledger(engine, user_id) == [
        ("CREDIT_PURCHASE", 20), ("PROMO_BONUS", 3), ("PURCHASE_REVERSAL", 23)
    ]
    assert await purchase_debt(engine, intent) == (23, 23, 0)
    assert await reconcile(engine) == []


async def test_a_chargeback_lost_before_the_payment_arrived_leaves_nothing_spendable(
    http, pack, engine, worker, user_id
):
    intent = await started(http, pack["id"], user_id)  # the user has no account yet
    dispute_id = await dispute(http, engine, intent)
    await dispute(http, engine, intent, "lost", dispute_id)
    paid = await delivered(http, engine, intent_event(intent, user_id, 1800))
    assert paid["status"] == "applied", paid
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (0, 0)
    assert await purchase_debt(engine, intent) == (23, 23, 0)
    assert await reconcile(engine) == []


async def test_a_dispute_open_when_the_payment_arrives_freezes_its_grant(
    http, pack, engine, worker, user_id
):
    intent = await started(http, pack["id"], user_id)
    dispute_id = await dispute(http, engine, intent)
    await delivered(http, engine, intent_event(intent, user_id, 1800))
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (0, 23)
    await dispute(http, engine, intent, "won", dispute_id)
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (23, 0)
    assert await reconcile(engine) == []


async def test_a_dispute_closed_before_it_was_opened_is_settled_and_not_reopened(
    http, pack, engine, worker, user_id
):
    intent = await bought(http, pack["id"], user_id)
    dispute_id = f"dp_{uuid.uuid4().hex[:10]}"
    await dispute(http, engine, intent, "lost", dispute_id)
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert balance["total"] == 0, "the lost chargeback took the credits"
    late = await delivered(http, engine, dispute_event(intent, dispute_id, "created",
                                                       "needs_response"))
    assert late["status"] == "applied" and late["result"].get("already"), late
    async with engine.connect() as conn:
        frozen = await conn.scalar(
            text("SELECT count(*) FROM holds WHERE user_id = :u AND status = 'open'"),
            {"u": user_id})
    assert frozen == 0, "no freeze waits for a decision that was already made"
    assert await purchase_debt(engine, intent) == (23, 23, 0)
    assert await reconcile(engine) == []
