"""Fraud monitoring on the real stack: rules in the worker, flags, freezes, admin review.

Purchases are real PaymentIntents in localstripe; Stripe's events that carry what the
rules look at (successes, failures, the card's fingerprint on `charge.succeeded`) are
signed by the tests with the configured secret, as Stripe would send them.
"""

import asyncio
import time
import uuid

import pytest

from services.ledger.invariant_queries import reconcile
from tests.conftest import auth, fresh_auth
from tests.test_purchases import intent_event, post_event, purchase, wait_balance

ADMIN = fresh_auth("fraud-admin", "admin")


async def paid(http, pack: dict, user: str) -> str:
    started = await purchase(http, pack["id"], user)
    response = await post_event(http, intent_event(started["paymentIntentId"], user, pack["price"]))
    assert response.status_code == 200, response.text
    return started["paymentIntentId"]


def charge_event(intent_id: str, fingerprint: str) -> dict:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}", "object": "event", "type": "charge.succeeded",
        "created": int(time.time()), "livemode": False,
        "data": {"object": {"id": f"ch_{uuid.uuid4().hex[:14]}", "object": "charge",
                            "payment_intent": intent_id, "amount": 1800, "currency": "usd",
                            "payment_method_details": {"type": "card", "card": {
                                "brand": "visa", "last4": "4242", "fingerprint": fingerprint}}}},
    }


async def flags_of(http, user: str, want: int = 1, timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        response = await http.get(f"/payment/admin/fraud-flags/?userId={user}", headers=ADMIN)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        if len(items) >= want or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.1)


async def resolve(http, flag_id: str, resolution: str, key: str | None = None):
    return await http.post(
        f"/payment/admin/fraud-flags/{flag_id}/resolve",
        json={"resolution": resolution, "note": "reviewed"},
        headers={**ADMIN, "Idempotency-Key": key or str(uuid.uuid4())},
    )


async def test_many_purchases_in_a_window_flag_then_freeze_until_an_admin_clears_them(
    http, engine, events, pack, user_id
):
    for n in range(1, 12):
        await paid(http, pack, user_id)
        await wait_balance(http, user_id, 23 * n)
    flags = {f["subject"]: f for f in await flags_of(http, user_id, want=2)}
    assert set(flags) == {"medium", "high"}, flags
    medium, high = flags["medium"], flags["high"]
    assert medium["rule"] == high["rule"] == "purchase_velocity"
    assert (medium["details"]["purchases"], high["details"]["purchases"]) == (6, 11)
    assert medium["frozenCredits"] == 0 and high["frozenCredits"] == 11 * 20
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (11 * 3, 11 * 20), "purchased credits frozen"
    flagged = await events.wait_for(
        lambda e: e["type"] == "fraud.flagged" and e["userId"] == user_id, count=2
    )
    assert sorted(e["payload"]["severity"] for e in flagged) == ["high", "medium"]
    assert (await http.get("/payment/admin/fraud-flags/", headers=auth(user_id))).status_code == 403

    key = str(uuid.uuid4())
    cleared = await resolve(http, high["id"], "cleared", key)
    assert cleared.status_code == 200, cleared.text
    assert (cleared.json()["status"], cleared.json()["released"]) == ("cleared", 220)
    assert (await resolve(http, high["id"], "cleared", key)).json() == cleared.json(), "replayed"
    again = await resolve(http, high["id"], "confirmed")
    assert again.status_code == 200 and again.json()["already"] is True
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert (balance["available"], balance["held"]) == (11 * 23, 0)
    confirmed = await resolve(http, medium["id"], "confirmed")
    assert confirmed.json()["status"] == "confirmed" and confirmed.json()["revoked"] == 0
    review = await http.get(f"/payment/admin/fraud-flags/?userId={user_id}&status=open", headers=ADMIN)
    assert review.json()["items"] == []
    assert await reconcile(engine) == []


async def test_one_card_paying_for_many_accounts_flags_the_newest_and_confirming_takes_back(
    http, engine, pack
):
    fingerprint = f"fp_{uuid.uuid4().hex[:12]}"
    users = [f"u-card-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for user in users:
        intent = await paid(http, pack, user)
        await wait_balance(http, user, 23)
        response = await post_event(http, charge_event(intent, fingerprint))
        assert response.status_code == 200 and "commandId" in response.json(), response.text
    (flag,) = await flags_of(http, users[2])
    assert (flag["rule"], flag["severity"], flag["subject"]) == ("shared_card", "high", fingerprint)
    assert flag["details"] == {"accounts": 3, "limit": 2} and flag["frozenCredits"] == 20
    for user in users[:2]:
        assert await flags_of(http, user, timeout=0.5) == []
    confirmed = await resolve(http, flag["id"], "confirmed")
    assert confirmed.json()["revoked"] == 20, confirmed.text
    balance = (await http.get("/payment/credits/balance", headers=auth(users[2]))).json()
    assert (balance["available"], balance["held"], balance["total"]) == (3, 0, 3)
    history = (await http.get("/payment/credits/history", headers=auth(users[2]))).json()["items"]
    assert history[0]["type"] == "ADJUSTMENT" and history[0]["heldCredits"] == -20
    assert await reconcile(engine) == []


async def test_repeated_payment_failures_raise_one_medium_flag(http, pack, user_id):
    for _ in range(4):
        started = await purchase(http, pack["id"], user_id)
        failed = intent_event(started["paymentIntentId"], user_id, pack["price"], kind="payment_failed")
        assert (await post_event(http, failed)).status_code == 200
    (flag,) = await flags_of(http, user_id)
    assert (flag["rule"], flag["severity"], flag["frozenCredits"]) == (
        "repeated_payment_failures", "medium", 0
    )
    assert flag["details"]["failures"] == 3, "raised at the limit, once while open"


@pytest.mark.parametrize("body", [{"resolution": "maybe"}, {}, {"resolution": "cleared", "x": 1}])
async def test_a_bad_resolution_is_refused_and_changes_nothing(http, body):
    response = await http.post(
        f"/payment/admin/fraud-flags/{uuid.uuid4()}/resolve", json=body,
        headers={**ADMIN, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 422 and response.json()["code"] == "PAY007"
    unknown = await resolve(http, str(uuid.uuid4()), "cleared")
    assert unknown.status_code == 404 and unknown.json()["code"] == "PAY008"
