"""Credit packs bought through Stripe: the real SDK against localstripe, real webhooks.

localstripe delivers its own signed events to the running ingress; for the cases it
cannot produce (replays, stale or forged signatures, amounts that do not match), the
tests sign events themselves with the configured secret, as Stripe would.
"""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import stripe
from sqlalchemy import text

from services.ledger.invariant_queries import reconcile
from tests.conftest import STRIPE_WEBHOOK_SECRET, auth


def signed(event: dict, secret: str = STRIPE_WEBHOOK_SECRET, at: int | None = None) -> tuple[str, str]:
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp=at or int(time.time())
    )
    return payload, header


def intent_event(intent_id: str, user: str, amount: int, kind: str = "succeeded") -> dict:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": f"payment_intent.{kind}",
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": {"id": intent_id, "object": "payment_intent", "amount": amount,
                            "amount_received": amount, "currency": "usd",
                            "metadata": {"userId": user}}},
    }


async def post_event(http, event: dict, **kwargs) -> httpx.Response:
    payload, header = signed(event, **kwargs)
    return await http.post(
        "/payment/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


async def wait_balance(http, user: str, total: int, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        balance = (await http.get("/payment/credits/balance", headers=auth(user))).json()
        if balance["total"] == total or time.monotonic() > deadline:
            return balance
        await asyncio.sleep(0.1)


async def purchase(http, pack_id: str, user: str, method: str = "pm_card_visa") -> dict:
    response = await http.post(
        f"/payment/credit-packs/{pack_id}/purchase",
        json={"paymentMethodId": method},
        headers={**auth(user), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_catalogue_lists_active_packs_with_price_per_credit(http, pack):
    listed = (await http.get("/payment/credit-packs/")).json()
    mine = next(p for p in listed if p["id"] == pack["id"])
    assert mine == {**pack, "pricePerCredit": 1800 // 23}
    archived = await http.delete(f"/payment/credit-packs/{pack['id']}", headers=auth("a", "admin"))
    assert archived.json()["active"] is False
    assert (await http.get(f"/payment/credit-packs/{pack['id']}")).status_code == 404
    user_try = await http.post(
        "/payment/credit-packs/",
        json={"id": "pack_x", "name": "x", "credits": 1, "price": 1},
        headers=auth("someone"),
    )
    assert user_try.status_code == 403


async def test_paid_purchase_grants_purchased_and_bonus_credits_from_stripes_webhook(
    http, pack, stripe_client, webhook_registered, events, user_id
):
    started = await purchase(http, pack["id"], user_id)
    assert started["amount"] == 1800 and started["credits"] == 20 and started["bonusCredits"] == 3
    assert started["clientSecret"].startswith(started["paymentIntentId"])
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert balance["total"] == 0, "no credits before Stripe says the payment succeeded"
    await stripe_client.v1.payment_intents.confirm_async(started["paymentIntentId"])
    balance = await wait_balance(http, user_id, 23)
    assert balance["total"] == 23
    assert sorted((b["source"], b["remaining"]) for b in balance["batches"]) == [
        ("PROMOTIONAL", 3), ("PURCHASED", 20)
    ]
    history = (await http.get("/payment/credits/history", headers=auth(user_id))).json()["items"]
    bought = next(i for i in history if i["type"] == "CREDIT_PURCHASE")
    assert (bought["amount"], bought["currency"], bought["credits"]) == (1800, "usd", 20)
    assert bought["stripePaymentIntentId"] == started["paymentIntentId"]
    assert bought["metadata"]["packId"] == pack["id"]
    kinds = {e["type"] for e in await events.wait_for(
        lambda e: e.get("userId") == user_id and e["type"] in {"payment.succeeded", "receipt.requested"},
        count=2,
    )}
    assert kinds == {"payment.succeeded", "receipt.requested"}


async def test_declined_card_marks_the_purchase_failed_with_pay002(
    http, pack, stripe_client, webhook_registered, events, engine, user_id
):
    started = await purchase(http, pack["id"], user_id, method="pm_card_chargeCustomerFail")
    with pytest.raises(stripe.CardError):
        await stripe_client.v1.payment_intents.confirm_async(started["paymentIntentId"])
    failed = await events.wait_for(
        lambda e: e.get("userId") == user_id and e["type"] == "payment.failed"
    )
    assert failed and failed[0]["payload"]["code"] == "PAY002"
    async with engine.connect() as conn:
        status = await conn.scalar(
            text("SELECT status FROM purchases WHERE id = :id"), {"id": started["purchaseId"]}
        )
    assert status == "failed"
    assert (await wait_balance(http, user_id, 0, timeout=1))["total"] == 0


async def test_one_payment_intent_grants_once_however_many_events_mention_it(
    http, pack, engine, worker, user_id
):
    started = await purchase(http, pack["id"], user_id)
    first = intent_event(started["paymentIntentId"], user_id, 1800)
    other = intent_event(started["paymentIntentId"], user_id, 1800)  # another event id
    for event in (first, first, other, other):
        response = await post_event(http, event)
        assert response.status_code == 200, response.text
    await wait_balance(http, user_id, 23)
    await asyncio.sleep(1.0)
    assert (await wait_balance(http, user_id, 23, timeout=0))["total"] == 23
    async with engine.connect() as conn:
        grants = await conn.scalar(
            text("SELECT count(*) FROM ledger_transactions WHERE stripe_payment_intent_id = :pi"),
            {"pi": started["paymentIntentId"]},
        )
    assert grants == 1
    assert await reconcile(engine) == []


async def test_bad_deliveries_grant_nothing(http, pack, engine, worker, user_id):
    started = await purchase(http, pack["id"], user_id)
    event = intent_event(started["paymentIntentId"], user_id, 1800)
    forged = await post_event(http, event, secret="whsec_wrong")
    stale = await post_event(http, event, at=int(time.time()) - 600)
    missing = await http.post("/payment/webhooks/stripe", content=json.dumps(event))
    garbage = await http.post(
        "/payment/webhooks/stripe", content=b"{not json", headers={"Stripe-Signature": "t=1,v1=x"}
    )
    for response in (forged, stale, missing, garbage):
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "PAY005"
    unknown = await post_event(http, {**event, "id": "evt_other", "type": "customer.created"})
    assert unknown.status_code == 200 and unknown.json()["ignored"] is True
    underpaid = await post_event(http, intent_event(started["paymentIntentId"], user_id, 100))
    stranger = await post_event(http, intent_event("pi_does_not_exist", user_id, 1800))
    assert underpaid.status_code == stranger.status_code == 200
    await asyncio.sleep(1.5)
    async with engine.connect() as conn:
        codes = dict(
            (
                await conn.execute(
                    text(
                        "SELECT command_id, error_code FROM processed_commands WHERE command_id = "
                        "ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": [underpaid.json()["commandId"], stranger.json()["commandId"]]},
                )
            ).all()
        )
        recorded = await conn.scalar(
            text("SELECT count(*) FROM stripe_events WHERE event_id = :id"), {"id": event["id"]}
        )
    assert sorted(codes.values()) == ["PAY002", "PAY008"]
    assert recorded == 0, "nothing from an unverified delivery is recorded"
    assert (await wait_balance(http, user_id, 0, timeout=0))["total"] == 0


async def test_purchase_limits_are_checked_before_stripe_is_called(http, user_id):
    tiny = await http.post(
        "/payment/credit-packs/",
        json={"id": f"pack_{uuid.uuid4().hex[:8]}", "name": "too small", "credits": 2,
              "price": 200},
        headers=auth("admin-1", "admin"),
    )
    refused = await http.post(
        f"/payment/credit-packs/{tiny.json()['id']}/purchase", headers=auth(user_id)
    )
    assert refused.status_code == 422 and refused.json()["code"] == "PAY016"
    unknown = await http.post("/payment/credit-packs/pack_nope/purchase", headers=auth(user_id))
    assert unknown.status_code == 404 and unknown.json()["code"] == "PAY008"


def refund_event(intent_id: str, amount_refunded: int) -> dict:
    """localstripe sends no charge.refunded: signed here as Stripe would send it."""
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": "charge.refunded",
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": {"id": f"ch_{uuid.uuid4().hex[:12]}", "object": "charge",
                            "payment_intent": intent_id, "amount": 1800,
                            "amount_refunded": amount_refunded, "currency": "usd",
                            "refunded": amount_refunded >= 1800}},
    }


async def bought(http, pack_id: str, user: str) -> str:
    started = await purchase(http, pack_id, user)
    response = await post_event(http, intent_event(started["paymentIntentId"], user, 1800))
    assert response.status_code == 200
    assert (await wait_balance(http, user, 23))["total"] == 23
    return started["paymentIntentId"]


async def test_money_refunded_in_stripe_takes_back_proportional_credits(
    http, pack, engine, worker, events, user_id
):
    intent = await bought(http, pack["id"], user_id)
    half = await post_event(http, refund_event(intent, 900))
    assert half.status_code == 200
    balance = await wait_balance(http, user_id, 12)
    assert balance["total"] == 12, "23 credits * 900/1800, rounded down in the user's favour: 11"
    again = await post_event(http, refund_event(intent, 900))  # the same refund reported again
    assert again.status_code == 200
    await post_event(http, refund_event(intent, 1800))
    assert (await wait_balance(http, user_id, 0))["total"] == 0
    await asyncio.sleep(0.5)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, refunded_minor, clawed_credits, shortfall_credits "
                    "FROM purchases WHERE payment_intent_id = :pi"
                ),
                {"pi": intent},
            )
        ).one()
        reversals = (
            await conn.execute(
                text(
                    "SELECT credits, amount_minor FROM ledger_transactions "
                    "WHERE stripe_payment_intent_id = :pi AND type = 'PURCHASE_REVERSAL' ORDER BY seq"
                ),
                {"pi": intent},
            )
        ).all()
    assert tuple(row) == ("refunded", 1800, 23, 0)
    assert [tuple(r) for r in reversals] == [(11, 900), (12, 900)]
    refunded = await events.wait_for(
        lambda e: e.get("userId") == user_id and e["type"] == "payment.refunded", count=2
    )
    assert sorted(e["payload"]["refunded"] for e in refunded) == [900, 1800]
    assert await reconcile(engine) == []


async def test_refund_of_spent_credits_takes_what_is_left_and_flags_it(
    http, pack, engine, worker, events, user_id
):
    intent = await bought(http, pack["id"], user_id)
    spend = {
        "id": str(uuid.uuid4()), "type": "credits.charge", "userId": user_id,
        "payload": {"credits": 20, "reference": "booking-spent"},
    }
    charged = await http.post("/payment/commands/", json=spend, headers=auth("svc", "service"))
    assert charged.status_code == 200, charged.text
    await post_event(http, refund_event(intent, 1800))
    flagged = await events.wait_for(
        lambda e: e.get("userId") == user_id and e["type"] == "fraud.flagged"
    )
    assert flagged and flagged[0]["payload"]["shortfallCredits"] == 20
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert balance["total"] == 0, "what was left is taken; the balance never goes negative"
    async with engine.connect() as conn:
        shortfall = await conn.scalar(
            text("SELECT shortfall_credits FROM purchases WHERE payment_intent_id = :pi"),
            {"pi": intent},
        )
    assert shortfall == 20
    assert await reconcile(engine) == []


@contextlib.asynccontextmanager
async def webhooks_lost(settings, webhook_url: str) -> AsyncIterator[None]:
    """Stripe "loses" what happens inside: only an unrelated event type is delivered."""
    register = f"{settings.stripe_api_base}/_config/webhooks/pika"
    key = {"Authorization": f"Bearer {settings.stripe_secret_key}"}
    async with httpx.AsyncClient() as admin:
        lost = await admin.post(
            register,
            data={"url": webhook_url, "secret": STRIPE_WEBHOOK_SECRET,
                  "events[]": "customer.created"},
            headers=key,
        )
        assert lost.status_code == 200, lost.text
        try:
            yield
            await asyncio.sleep(2.0)  # localstripe sends after a second: let those go astray
        finally:
            restored = await admin.post(
                register, data={"url": webhook_url, "secret": STRIPE_WEBHOOK_SECRET}, headers=key
            )
            assert restored.status_code == 200


async def reconcile_stripe_cli(settings, *extra: str):
    from tests.test_cli import cli

    return await asyncio.to_thread(cli, settings, "reconcile", "--stripe", *extra)


async def purchase_row(engine, purchase_id: str) -> tuple:
    async with engine.connect() as conn:
        return tuple(
            (
                await conn.execute(
                    text("SELECT status, payment_intent_id FROM purchases WHERE id = :id"),
                    {"id": purchase_id},
                )
            ).one()
        )


async def purchase_grants(engine, purchase_id: str) -> list[tuple]:
    """The CREDIT_PURCHASE transactions of a purchase: (user, credits, intent)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT user_id, credits, stripe_payment_intent_id FROM ledger_transactions "
                "WHERE type = 'CREDIT_PURCHASE' AND metadata->>'purchaseId' = :id"
            ),
            {"id": purchase_id},
        )
        return [tuple(r) for r in rows]


async def checkout_paid_without_webhook(
    http, stripe_client, settings, webhook_url: str, pack_id: str, user: str, *,
    amount: int = 1800, metadata_user: str | None = None,
) -> tuple[dict, str]:
    """A Checkout purchase paid in Stripe whose webhooks never arrived: our row knows no intent."""
    response = await http.post(
        f"/payment/credit-packs/{pack_id}/purchase",
        json={"mode": "checkout"},
        headers={**auth(user), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text
    started = response.json()
    async with webhooks_lost(settings, webhook_url):
        # The hosted page's PaymentIntent carries the session's metadata.
        customer = await stripe_client.v1.customers.create_async(params={})
        intent = await stripe_client.v1.payment_intents.create_async(
            params={
                "amount": amount, "currency": "usd", "customer": customer.id,
                "payment_method": "pm_card_visa", "payment_method_types": ["card"],
                "metadata": {"userId": metadata_user or user, "purchaseId": started["purchaseId"]},
            }
        )
        await stripe_client.v1.payment_intents.confirm_async(intent.id)
    return started, intent.id


async def test_reconcile_with_stripe_grants_a_payment_whose_webhook_was_lost(
    http, pack, settings, stripe_client, webhook_registered, worker, engine, user_id
):
    async with webhooks_lost(settings, webhook_registered):
        started = await purchase(http, pack["id"], user_id)
        await stripe_client.v1.payment_intents.confirm_async(started["paymentIntentId"])
    assert (await wait_balance(http, user_id, 0, timeout=0))["total"] == 0
    fixed = await reconcile_stripe_cli(settings)
    assert fixed.returncode == 0, fixed.stderr
    assert (
        f"purchase {started['purchaseId']} of {user_id} (pending; {started['paymentIntentId']}, "
        "1800 usd) was missing: applied"
    ) in fixed.stderr
    assert (await wait_balance(http, user_id, 23))["total"] == 23
    again = await reconcile_stripe_cli(settings)
    assert again.returncode == 0 and started["purchaseId"] not in again.stderr
    assert await purchase_grants(engine, started["purchaseId"]) == [
        (user_id, 20, started["paymentIntentId"])
    ]


async def test_reconcile_with_stripe_grants_a_checkout_purchase_once_to_its_owner(
    http, pack, settings, stripe_client, webhook_registered, worker, engine, user_id
):
    """Our row has no PaymentIntent (only a webhook would tell): matched by `purchaseId`.

    The intent's metadata names another user: the credits go to our purchase's owner.
    """
    other = f"intruder-{uuid.uuid4().hex[:8]}"
    started, intent = await checkout_paid_without_webhook(
        http, stripe_client, settings, webhook_registered, pack["id"], user_id,
        metadata_user=other,
    )
    assert await purchase_row(engine, started["purchaseId"]) == ("pending", None)
    assert (await wait_balance(http, user_id, 0, timeout=0))["total"] == 0
    fixed = await reconcile_stripe_cli(settings)
    assert fixed.returncode == 0, fixed.stderr
    assert f"purchase {started['purchaseId']} of {user_id} (pending; {intent}, 1800 usd) " \
        "was missing: applied" in fixed.stderr
    assert (await wait_balance(http, user_id, 23))["total"] == 23
    again = await reconcile_stripe_cli(settings)  # run twice: granted once
    assert again.returncode == 0, again.stderr
    assert started["purchaseId"] not in again.stderr
    late = intent_event(intent, user_id, 1800)  # and the webhook arrives after all
    late["data"]["object"]["metadata"]["purchaseId"] = started["purchaseId"]
    assert (await post_event(http, late)).status_code == 200
    await asyncio.sleep(1.0)
    assert (await wait_balance(http, user_id, 23, timeout=0))["total"] == 23
    assert (await wait_balance(http, other, 0, timeout=0))["total"] == 0
    assert await purchase_row(engine, started["purchaseId"]) == ("succeeded", intent)
    assert await purchase_grants(engine, started["purchaseId"]) == [(user_id, 20, intent)]
    assert await reconcile(engine) == []


async def test_reconcile_with_stripe_grants_a_failed_purchase_whose_intent_then_succeeded(
    http, pack, settings, stripe_client, webhook_registered, worker, engine, events, user_id
):
    started = await purchase(http, pack["id"], user_id)
    intent = started["paymentIntentId"]
    declined = intent_event(intent, user_id, 1800, kind="payment_failed")
    declined["data"]["object"]["last_payment_error"] = {"code": "card_declined"}
    assert (await post_event(http, declined)).status_code == 200
    await events.wait_for(lambda e: e.get("userId") == user_id and e["type"] == "payment.failed")
    assert await purchase_row(engine, started["purchaseId"]) == ("failed", intent)
    async with webhooks_lost(settings, webhook_registered):  # the retry succeeds, unheard
        await stripe_client.v1.payment_intents.confirm_async(intent)
    assert (await wait_balance(http, user_id, 0, timeout=0))["total"] == 0
    fixed = await reconcile_stripe_cli(settings)
    assert fixed.returncode == 0, fixed.stderr
    assert f"purchase {started['purchaseId']} of {user_id} (failed; {intent}, 1800 usd) " \
        "was missing: applied" in fixed.stderr
    assert (await wait_balance(http, user_id, 23))["total"] == 23
    again = await reconcile_stripe_cli(settings)
    assert again.returncode == 0 and started["purchaseId"] not in again.stderr
    assert await purchase_row(engine, started["purchaseId"]) == ("succeeded", intent)
    assert await purchase_grants(engine, started["purchaseId"]) == [(user_id, 20, intent)]
    assert await reconcile(engine) == []


async def test_reconcile_with_stripe_dry_run_lists_and_changes_nothing(
    http, pack, settings, stripe_client, webhook_registered, worker, engine, user_id
):
    started, intent = await checkout_paid_without_webhook(
        http, stripe_client, settings, webhook_registered, pack["id"], user_id
    )
    listed = await reconcile_stripe_cli(settings, "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert f"purchase {started['purchaseId']} of {user_id} (pending; {intent}, 1800 usd) " \
        "was missing: would be confirmed" in listed.stderr
    assert "nothing published" in listed.stderr
    await asyncio.sleep(1.5)
    assert (await wait_balance(http, user_id, 0, timeout=0))["total"] == 0
    assert await purchase_row(engine, started["purchaseId"]) == ("pending", None)
    async with engine.connect() as conn:
        commands = await conn.scalar(
            text("SELECT count(*) FROM processed_commands WHERE user_id = :u"), {"u": user_id}
        )
    assert commands == 0, "a dry run publishes nothing"
    fixed = await reconcile_stripe_cli(settings)  # and leaves the real run its work
    assert fixed.returncode == 0 and "was missing: applied" in fixed.stderr, fixed.stderr
    assert (await wait_balance(http, user_id, 23))["total"] == 23


async def test_reconcile_with_stripe_leaves_an_intent_of_another_amount_to_the_worker_to_refuse(
    http, pack, settings, stripe_client, webhook_registered, worker, engine, user_id
):
    """An intent naming our purchase but paying less is refused (PAY002) and reported."""
    started, cheap = await checkout_paid_without_webhook(
        http, stripe_client, settings, webhook_registered, pack["id"], user_id, amount=100
    )
    refused = await reconcile_stripe_cli(settings)
    assert refused.returncode == 1, refused.stderr
    assert f"purchase {started['purchaseId']} of {user_id} (pending; {cheap}, 100 usd) " \
        "was missing: PAY002" in refused.stderr
    assert (await wait_balance(http, user_id, 0, timeout=0))["total"] == 0
    assert await purchase_row(engine, started["purchaseId"]) == ("pending", None)
    # The genuine payment is then granted by its webhook (and leaves later runs nothing).
    completed = checkout_completed(
        started["checkoutSessionId"], f"pi_{uuid.uuid4().hex[:12]}", user_id,
        started["purchaseId"],
    )
    assert (await post_event(http, completed)).status_code == 200
    assert (await wait_balance(http, user_id, 23))["total"] == 23
    assert await reconcile(engine) == []


def checkout_completed(session_id: str, intent_id: str, user: str, purchase_id: str) -> dict:
    """localstripe sends no checkout.* events: signed here as Stripe would send it."""
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": "checkout.session.completed",
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": {"id": session_id, "object": "checkout.session", "mode": "payment",
                            "payment_status": "paid", "payment_intent": intent_id,
                            "amount_total": 1800, "currency": "usd",
                            "metadata": {"userId": user, "purchaseId": purchase_id}}},
    }


async def test_checkout_purchase_grants_once_from_both_of_its_events(
    http, pack, stripe_client, webhook_registered, engine, user_id
):
    response = await http.post(
        f"/payment/credit-packs/{pack['id']}/purchase",
        json={"mode": "checkout"},
        headers={**auth(user_id), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text
    started = response.json()
    assert started["mode"] == "checkout" and started["url"].startswith("https://")
    assert started["paymentIntentId"] is None and started["checkoutSessionId"].startswith("cs_")
    # The customer pays on the hosted page: Stripe creates and confirms a PaymentIntent
    # carrying the session's metadata (localstripe then sends payment_intent.succeeded).
    customer = await stripe_client.v1.customers.create_async(params={})
    intent = await stripe_client.v1.payment_intents.create_async(
        params={
            "amount": 1800, "currency": "usd", "customer": customer.id,
            "payment_method": "pm_card_visa", "payment_method_types": ["card"],
            "metadata": {"userId": user_id, "purchaseId": started["purchaseId"]},
        }
    )
    await stripe_client.v1.payment_intents.confirm_async(intent.id)
    completed = checkout_completed(
        started["checkoutSessionId"], intent.id, user_id, started["purchaseId"]
    )
    for event in (completed, completed, intent_event(intent.id, user_id, 1800)):
        event["data"]["object"].setdefault("metadata", {})["purchaseId"] = started["purchaseId"]
        assert (await post_event(http, event)).status_code == 200
    assert (await wait_balance(http, user_id, 23))["total"] == 23
    await asyncio.sleep(1.5)
    assert (await wait_balance(http, user_id, 23, timeout=0))["total"] == 23
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, payment_intent_id FROM purchases WHERE id = :id"),
                {"id": started["purchaseId"]},
            )
        ).one()
    assert tuple(row) == ("succeeded", intent.id)


async def test_admin_refund_of_a_purchase_refunds_money_in_stripe_and_takes_credits_back(
    http, pack, stripe_client, webhook_registered, engine, worker, user_id
):
    started = await purchase(http, pack["id"], user_id)
    intent = started["paymentIntentId"]
    await stripe_client.v1.payment_intents.confirm_async(intent)
    assert (await wait_balance(http, user_id, 23))["total"] == 23
    async with engine.connect() as conn:
        grant_tx = await conn.scalar(
            text("SELECT grant_transaction_id FROM purchases WHERE payment_intent_id = :pi"),
            {"pi": intent},
        )
    admin = {**auth("support", "admin"), "Idempotency-Key": str(uuid.uuid4())}
    body = {"userId": user_id, "transactionId": str(grant_tx), "amount": 600, "reason": "goodwill"}
    first = await http.post("/payment/credits/refund", json=body, headers=admin)
    assert first.status_code == 200, first.text
    assert first.json()["creditsRevoked"] == 23 * 600 // 1800
    replay = await http.post("/payment/credits/refund", json=body, headers=admin)
    assert replay.json() == first.json(), "same key: one refund"
    refunds = await stripe_client.v1.refunds.list_async(params={"limit": 100})
    ours = [r for r in refunds.data if r.payment_intent == intent]
    assert [r.amount for r in ours] == [600], "the money moved once, in Stripe"
    rest = await http.post(
        "/payment/credits/refund",
        json={**body, "amount": None},
        headers={**auth("support", "admin"), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert rest.status_code == 200, rest.text
    assert (await wait_balance(http, user_id, 0))["total"] == 0
    again = await http.post(
        "/payment/credits/refund",
        json={**body, "amount": 1},
        headers={**auth("support", "admin"), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert again.status_code == 409 and again.json()["code"] == "PAY014"
    assert await reconcile(engine) == []


def dispute_event(intent_id: str, dispute_id: str, kind: str, status: str) -> dict:
    """localstripe sends no dispute events: signed here as Stripe would send them."""
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": f"charge.dispute.{kind}",
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": {"id": dispute_id, "object": "dispute", "amount": 1800,
                            "currency": "usd", "charge": "ch_x", "payment_intent": intent_id,
                            "status": status}},
    }


@pytest.mark.parametrize("outcome", ["won", "lost"])
async def test_dispute_freezes_the_purchases_unspent_credits_until_it_closes(
    http, pack, engine, worker, events, user_id, outcome
):
    intent = await bought(http, pack["id"], user_id)
    spend = {"id": str(uuid.uuid4()), "type": "credits.charge", "userId": user_id,
             "payload": {"credits": 5, "reference": "booking-before-dispute"}}
    assert (await http.post("/payment/commands/", json=spend,
                            headers=auth("svc", "service"))).status_code == 200
    dispute = f"dp_{uuid.uuid4().hex[:10]}"
    opened = dispute_event(intent, dispute, "created", "needs_response")
    for _ in range(2):  # delivered twice: frozen once
        assert (await post_event(http, opened)).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
        if balance["held"]:
            break
        await asyncio.sleep(0.1)
    assert (balance["available"], balance["held"]) == (0, 18)
    blocked = await http.post(
        "/payment/commands/",
        json={**spend, "id": str(uuid.uuid4()), "payload": {"credits": 1, "reference": "b"}},
        headers=auth("svc", "service"),
    )
    assert blocked.status_code == 402, "frozen credits cannot be spent"
    flagged = await events.wait_for(
        lambda e: e.get("userId") == user_id and e["type"] == "fraud.flagged"
    )
    assert flagged[0]["payload"]["reason"] == "dispute_opened"
    closed = dispute_event(intent, dispute, "closed", outcome)
    assert (await post_event(http, closed)).status_code == 200
    expected = 18 if outcome == "won" else 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
        if balance["held"] == 0:
            break
        await asyncio.sleep(0.1)
    assert (balance["available"], balance["held"]) == (expected, 0)
    assert await reconcile(engine) == []


async def wait_held(http, user: str, held: int, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        balance = (await http.get("/payment/credits/balance", headers=auth(user))).json()
        if balance["held"] == held or time.monotonic() > deadline:
            return balance
        await asyncio.sleep(0.1)


async def test_an_inquiry_closed_without_chargeback_gives_the_frozen_credits_back(
    http, pack, engine, worker, user_id
):
    """`warning_closed`: the merchant kept the money, so nothing is taken (was: taken as lost)."""
    intent = await bought(http, pack["id"], user_id)
    dispute = f"dp_{uuid.uuid4().hex[:10]}"
    opened = dispute_event(intent, dispute, "created", "warning_needs_response")
    assert (await post_event(http, opened)).status_code == 200
    assert (await wait_held(http, user_id, 23))["available"] == 0
    # A closing status we do not know takes nothing and releases nothing: the freeze stays.
    odd = await post_event(http, dispute_event(intent, dispute, "closed", "under_review"))
    assert odd.status_code == 200 and odd.json()["ignored"] is True
    closed = await post_event(http, dispute_event(intent, dispute, "closed", "warning_closed"))
    assert closed.status_code == 200 and "commandId" in closed.json()
    balance = await wait_held(http, user_id, 0)
    assert (balance["available"], balance["held"]) == (23, 0), "all credits back, none taken"
    async with engine.connect() as conn:
        settled = (
            await conn.execute(
                text(
                    "SELECT type, credits FROM ledger_transactions "
                    "WHERE user_id = :u AND reference = :ref ORDER BY seq"
                ),
                {"u": user_id, "ref": f"dispute:{dispute}"},
            )
        ).all()
        purchase_row = (
            await conn.execute(
                text("SELECT status, clawed_credits FROM purchases WHERE payment_intent_id = :pi"),
                {"pi": intent},
            )
        ).one()
    assert [tuple(r) for r in settled] == [("CREDIT_HOLD", 23), ("CREDIT_RELEASE", 23)]
    assert tuple(purchase_row) == ("succeeded", 0)
    assert await reconcile(engine) == []


async def test_stripe_sync_makes_products_and_a_new_price_when_the_price_changes(
    http, pack, settings, stripe_client
):
    admin = auth("catalogue-admin", "admin")
    first = await http.post("/payment/products/sync", headers=admin)
    assert first.status_code == 200, first.text
    mine = next(line for line in first.json() if line["pack_id"] == pack["id"])
    assert mine["new_price"] is True
    product = await stripe_client.v1.products.retrieve_async(mine["product_id"])
    assert product.name == "Test 20 + 3" and product.metadata["packId"] == pack["id"]
    again = await http.post("/payment/products/sync", headers=admin)
    same = next(line for line in again.json() if line["pack_id"] == pack["id"])
    assert same == {**mine, "new_price": False}, "nothing changed: nothing made"
    await http.patch(
        f"/payment/credit-packs/{pack['id']}", json={"price": 1900, "name": "Test, dearer"},
        headers=admin,
    )
    from tests.test_cli import cli

    synced = await asyncio.to_thread(cli, settings, "stripe-sync")
    assert synced.returncode == 0, synced.stderr
    [line] = [x for x in synced.stderr.splitlines() if x.startswith(f"{pack['id']}: ")]
    assert line.startswith(f"{pack['id']}: product {mine['product_id']}, price_")
    assert line.endswith("(new price)") and mine["price_id"] not in line
    renamed = await stripe_client.v1.products.retrieve_async(mine["product_id"])
    assert renamed.name == "Test, dearer"


async def test_a_thousand_bad_deliveries_record_and_apply_nothing(http, pack, engine, user_id):
    """Forged, replayed, truncated, mistyped and oversized deliveries of real-looking events."""
    import random

    started = await purchase(http, pack["id"], user_id)
    rng = random.Random(7)
    good = intent_event(started["paymentIntentId"], user_id, 1800)
    deliveries: list[tuple[str, dict, bytes]] = []
    # A prefix of this run's own, compared literally: `LIKE 'evt_bad_%'` also matched
    # other tests' events (`_` is a wildcard, and `evt_` + random hex can begin "bad").
    prefix = f"evt_bad_{uuid.uuid4().hex[:12]}_"
    for i in range(1000):
        event = {**good, "id": f"{prefix}{i}"}
        payload, header = signed(event)
        kind = ["forged", "stale", "truncated", "content-type", "huge", "no-signature"][i % 6]
        body = payload.encode()
        headers = {"Stripe-Signature": header, "Content-Type": "application/json"}
        if kind == "forged":
            headers["Stripe-Signature"] = signed(event, secret=f"whsec_{rng.random()}")[1]
        elif kind == "stale":
            headers["Stripe-Signature"] = signed(event, at=int(time.time()) - 301 - i)[1]
        elif kind == "truncated":
            body = body[: rng.randrange(1, len(body) - 1)]
        elif kind == "content-type":
            headers["Content-Type"] = "text/plain"
            body = body.replace(b"1800", b"1801")  # and altered: the signature no longer fits
        elif kind == "huge":
            body = b'{"pad": "' + b"x" * (300 * 1024) + b'"}'
        else:
            del headers["Stripe-Signature"]
        deliveries.append((kind, headers, body))

    async def deliver(item: tuple[str, dict, bytes]) -> tuple[str, int]:
        kind, headers, body = item
        response = await http.post("/payment/webhooks/stripe", content=body, headers=headers)
        return kind, response.status_code

    results = []
    for start in range(0, len(deliveries), 50):
        results += await asyncio.gather(*(deliver(d) for d in deliveries[start:start + 50]))
    for kind, status in results:
        assert status in (400, 413), (kind, status)
    assert {status for kind, status in results if kind == "huge"} == {413}
    async with engine.connect() as conn:
        recorded = await conn.scalar(
            text("SELECT count(*) FROM stripe_events WHERE starts_with(event_id, :prefix)"),
            {"prefix": prefix},
        )
        purchase_status = await conn.scalar(
            text("SELECT status FROM purchases WHERE id = :id"), {"id": started["purchaseId"]}
        )
    assert recorded == 0
    assert purchase_status == "pending"
    assert (await wait_balance(http, user_id, 0, timeout=0))["total"] == 0
