"""Memberships through Stripe: the real SDK against localstripe, real and signed webhooks.

localstripe creates real subscriptions on legacy plans and delivers its own signed
`invoice.payment_succeeded`, `customer.subscription.created` and `.deleted` events to
the running ingress. It has no clock, trials, `subscription.updated` or failed-invoice
events: renewals, failures, trials and out-of-order state are events the tests sign
themselves with the configured secret, as Stripe would send them.
"""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from adapters.stripe.events import envelope_of
from services.ledger.invariant_queries import reconcile
from tests.conftest import auth, wait_processed
from tests.test_http_api import charge_http
from tests.test_purchases import post_event, wait_balance

GRACE = timedelta(hours=24)  # MEMBERSHIP_RENEWAL_GRACE_HOURS default


async def make_plan(http, credits: int = 10, rollover: str = "none", **extra) -> dict:
    plan_id = f"plan_{uuid.uuid4().hex[:8]}"
    body = {"id": plan_id, "name": f"Plan {plan_id}", "price": 2900, "currency": "usd",
            "interval": "month", "creditsPerPeriod": credits, "rollover": rollover, **extra}
    created = await http.post("/payment/memberships/plans", json=body, headers=auth("admin-1", "admin"))
    assert created.status_code == 201, created.text
    return created.json()


async def subscribe(http, plan_id: str, user: str, key: str | None = None, **body):
    return await http.post(
        f"/payment/memberships/{plan_id}/subscribe",
        json={"paymentMethodId": "pm_card_visa", **body},
        headers={**auth(user), "Idempotency-Key": key or str(uuid.uuid4())},
    )


async def current(http, user: str) -> dict:
    response = await http.get("/payment/memberships/current", headers=auth(user))
    assert response.status_code == 200, response.text
    return response.json()


async def wait_current(http, user: str, until=None, timeout: float = 20, **expected) -> dict:
    """The current membership once `until(found)` and every expected field hold."""
    deadline = time.monotonic() + timeout
    while True:
        found = await current(http, user)
        done = all(found.get(k) == v for k, v in expected.items()) and (until is None or until(found))
        if done or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def starts_at(moment: datetime):
    return lambda found: parse(found["currentPeriodStart"]) == moment


async def subscribed(http, plan: dict, user: str) -> dict:
    """A membership whose first period localstripe has charged and announced."""
    started = await subscribe(http, plan["id"], user)
    assert started.status_code == 200, started.text
    balance = await wait_balance(http, user, plan["creditsPerPeriod"])
    assert balance["total"] == plan["creditsPerPeriod"], "localstripe's paid invoice grants"
    return await wait_current(http, user, creditsThisPeriod=plan["creditsPerPeriod"])


async def stripe_plan_id(engine, plan_id: str) -> str:
    async with engine.connect() as conn:
        return await conn.scalar(
            text("SELECT stripe_plan_id FROM membership_plans WHERE id = :id"), {"id": plan_id}
        )


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def invoice_event(sub: str, start: datetime, end: datetime, stripe_plan: str, amount: int = 2900,
                  kind: str = "payment_succeeded", invoice: str | None = None, attempt: int = 1) -> dict:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": f"invoice.{kind}",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {
            "id": invoice or f"in_{uuid.uuid4().hex[:14]}",
            "object": "invoice",
            "subscription": sub,
            "amount_paid": amount if kind != "payment_failed" else 0,
            "amount_due": amount,
            "attempt_count": attempt,
            "currency": "usd",
            "billing_reason": "subscription_cycle",
            "lines": {"data": [{"type": "subscription", "proration": False,
                                "period": {"start": _ts(start), "end": _ts(end)},
                                "plan": {"id": stripe_plan}}]},
        }},
    }


def subscription_event(sub: str, kind: str, status: str, created: int | None = None, **extra) -> dict:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": f"customer.subscription.{kind}",
        "created": created or int(time.time()),
        "livemode": False,
        "data": {"object": {"id": sub, "object": "subscription", "status": status,
                            "cancel_at_period_end": False, "metadata": {}, **extra}},
    }


async def deliver_twice(http, event: dict) -> None:
    for _ in range(2):
        response = await post_event(http, event)
        assert response.status_code == 200 and "commandId" in response.json(), response.text


def parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


async def batches(http, user: str) -> list[tuple[int, datetime]]:
    balance = (await http.get("/payment/credits/balance", headers=auth(user))).json()
    return [(b["remaining"], parse(b["expiresAt"])) for b in balance["batches"]]


async def new_card(stripe_client, number: str | None = None) -> str:
    """A payment method for a card of its own, or for `number` (localstripe fingerprints
    the card number, as Stripe does: one card is one fingerprint on every account).
    A trial is claimed per card, so tests that want a trial bring a card nobody used."""
    number = number or f"4242{uuid.uuid4().int % 10**12:012d}"
    card = {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    created = await stripe_client.v1.payment_methods.create_async(params={"type": "card", "card": card})
    return str(created.id)


async def charged(http, user: str, credits: int) -> None:
    response = await charge_http(http, user, credits, reference=f"booking-{uuid.uuid4().hex[:6]}")
    assert response.status_code == 200, response.text


async def test_plans_are_listed_for_everyone_and_changed_by_admins_only(http):
    plan = await make_plan(http, credits=12, rollover="capped:4", trialDays=7, trialCredits=3)
    assert plan["rollover"] == "capped:4" and plan["trialDays"] == 7 and plan["active"] is True
    listed = (await http.get("/payment/memberships/")).json()
    assert plan in listed
    assert (await http.get(f"/payment/memberships/plans/{plan['id']}")).json() == plan
    for bad in ({"rollover": "capped:0"}, {"rollover": "forever"}, {"interval": "fortnight"},
                {"price": -5}, {"creditsPerPeriod": 0}, {"currency": "usdollar"}):
        refused = await http.post(
            "/payment/memberships/plans",
            json={"id": "plan_bad", "name": "x", "price": 100, "creditsPerPeriod": 1, **bad},
            headers=auth("admin-1", "admin"),
        )
        assert refused.status_code == 422 and refused.json()["code"] == "PAY007", bad
    user_try = await http.patch(f"/payment/memberships/plans/{plan['id']}", json={"name": "mine"},
                                headers=auth("someone"))
    assert user_try.status_code == 403
    changed = await http.patch(f"/payment/memberships/plans/{plan['id']}",
                               json={"creditsPerPeriod": 15}, headers=auth("admin-1", "admin"))
    assert changed.json()["creditsPerPeriod"] == 15
    archived = await http.delete(f"/payment/memberships/plans/{plan['id']}",
                                 headers=auth("admin-1", "admin"))
    assert archived.json()["active"] is False
    assert plan["id"] not in {p["id"] for p in (await http.get("/payment/memberships/")).json()}
    gone = await subscribe(http, plan["id"], "u-late")
    assert gone.status_code == 404 and gone.json()["code"] == "PAY008"


async def test_subscribe_grants_the_first_period_from_stripes_own_webhooks(
    http, engine, events, webhook_registered, user_id
):
    plan = await make_plan(http, credits=30)
    key = str(uuid.uuid4())
    started = await subscribe(http, plan["id"], user_id, key=key)
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["status"] == "active" and body["planId"] == plan["id"]
    assert body["subscriptionId"].startswith("sub_")
    replay = await subscribe(http, plan["id"], user_id, key=key)
    assert replay.json()["membershipId"] == body["membershipId"], "same key, same membership"
    balance = await wait_balance(http, user_id, 30)
    assert [(b["source"], b["remaining"]) for b in balance["batches"]] == [("MEMBERSHIP", 30)]
    membership = await wait_current(http, user_id, creditsThisPeriod=30)
    assert membership["status"] == "active" and membership["creditsThisPeriod"] == 30
    start, end = parse(membership["currentPeriodStart"]), parse(membership["currentPeriodEnd"])
    assert start < end and parse(balance["batches"][0]["expiresAt"]) == end + GRACE
    history = (await http.get("/payment/credits/history", headers=auth(user_id))).json()["items"]
    paid = [i for i in history if i["type"] == "MEMBERSHIP_PAYMENT"]
    assert len(paid) == 1 and (paid[0]["amount"], paid[0]["currency"], paid[0]["credits"]) == (
        2900, "usd", 30
    )
    assert paid[0]["metadata"]["membershipId"] == body["membershipId"]
    activated = await events.wait_for(
        lambda e: e["type"] == "membership.activated" and e["userId"] == user_id
    )
    assert len(activated) == 1 and activated[0]["payload"]["creditsGranted"] == 30
    assert activated[0]["payload"]["amount"] == 2900
    again = await subscribe(http, plan["id"], user_id)
    assert again.status_code == 409 and again.json()["code"] == "PAY004"
    other = await subscribe(http, (await make_plan(http))["id"], user_id)
    assert other.status_code == 409 and other.json()["code"] == "PAY004"
    assert await reconcile(engine) == []


async def test_cancel_at_period_end_then_now_keeps_the_credits_and_allows_a_new_subscription(
    http, events, webhook_registered, user_id
):
    plan = await make_plan(http, credits=8)
    first = await subscribed(http, plan, user_id)
    later = await http.post("/payment/memberships/cancel", json={},
                            headers={**auth(user_id), "Idempotency-Key": str(uuid.uuid4())})
    assert later.status_code == 200, later.text
    assert later.json()["cancelAtPeriodEnd"] is True and later.json()["status"] == "active"
    stored = await current(http, user_id)
    assert stored["cancelAtPeriodEnd"] is True and stored["status"] == "active"
    now = await http.post("/payment/memberships/cancel", json={"immediately": True},
                          headers={**auth(user_id), "Idempotency-Key": str(uuid.uuid4())})
    assert now.status_code == 200 and now.json()["status"] == "canceled"
    ended = await current(http, user_id)
    assert ended["status"] == "canceled" and ended["membershipId"] == first["membershipId"]
    canceled = await events.wait_for(
        lambda e: e["type"] == "membership.canceled" and e["userId"] == user_id, timeout=10
    )
    await events.wait_for(lambda e: False, timeout=1.5)  # localstripe's own .deleted arrives too
    canceled = [e for e in events.events
                if e["type"] == "membership.canceled" and e["userId"] == user_id]
    assert len(canceled) == 1, "announced once, however many sources say so"
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert balance["total"] == 8, "credits already granted stay until they expire"
    nothing = await http.post("/payment/memberships/cancel", json={},
                              headers={**auth(user_id), "Idempotency-Key": str(uuid.uuid4())})
    assert nothing.status_code == 404 and nothing.json()["code"] == "PAY008"
    renewed = await subscribe(http, plan["id"], user_id)
    assert renewed.status_code == 200 and renewed.json()["membershipId"] != first["membershipId"]
    assert (await wait_balance(http, user_id, 16))["total"] == 16


# Per policy, after: period 1 (10 credits, 3 spent), renewal 2, 4 spent, renewal 3.
# Each entry: (balance, [(remaining, expiry as a period end index)]) after renewals 2 and 3.
ROLLOVER_CASES = {
    "none": ((10, [(10, 2)]), (10, [(10, 3)])),
    "capped:5": ((15, [(5, 2), (10, 2)]), (15, [(5, 3), (10, 3)])),
    "one_cycle": ((17, [(7, 2), (10, 3)]), (20, [(10, 3), (10, 4)])),
}


@pytest.mark.parametrize("policy", list(ROLLOVER_CASES))
async def test_renewals_over_three_periods_follow_the_rollover_policy(
    http, engine, events, webhook_registered, user_id, policy
):
    plan = await make_plan(http, credits=10, rollover=policy)
    membership = await subscribed(http, plan, user_id)
    sub = membership["subscriptionId"]
    stripe_plan = await stripe_plan_id(engine, plan["id"])
    start, end = parse(membership["currentPeriodStart"]), parse(membership["currentPeriodEnd"])
    length = end - start
    ends = {n: start + length * n for n in range(1, 5)}
    await charged(http, user_id, 3)
    for renewal, (balance_after, expected) in zip((2, 3), ROLLOVER_CASES[policy], strict=True):
        await deliver_twice(http, invoice_event(sub, ends[renewal - 1], ends[renewal], stripe_plan))
        settled = await wait_current(http, user_id, starts_at(ends[renewal - 1]))
        balance = await wait_balance(http, user_id, balance_after)
        assert balance["total"] == balance_after, (policy, renewal, await batches(http, user_id))
        assert await batches(http, user_id) == [(n, ends[i] + GRACE) for n, i in expected]
        assert settled["creditsThisPeriod"] == 10
        if renewal == 2:
            await charged(http, user_id, 4)
    history = (await http.get("/payment/credits/history?limit=100", headers=auth(user_id))).json()
    kinds = [i["type"] for i in history["items"]]
    assert kinds.count("MEMBERSHIP_PAYMENT") == 3, "each invoice granted once, though sent twice"
    if policy == "capped:5":
        assert kinds.count("MEMBERSHIP_ROLLOVER") == 2
        rolled = [i for i in history["items"] if i["type"] == "MEMBERSHIP_ROLLOVER"]
        assert all(i["credits"] == 0 for i in rolled), "a rollover moves credits, not the balance"
    renewed = await events.wait_for(
        lambda e: e["type"] == "membership.renewed" and e["userId"] == user_id, count=2
    )
    assert len(renewed) == 2
    assert await reconcile(engine) == []


async def test_a_failed_renewal_is_past_due_with_dunning_events_then_recovers(
    http, engine, events, webhook_registered, user_id
):
    plan = await make_plan(http, credits=10)
    membership = await subscribed(http, plan, user_id)
    stripe_plan = await stripe_plan_id(engine, plan["id"])
    start, end = parse(membership["currentPeriodStart"]), parse(membership["currentPeriodEnd"])
    invoice = f"in_{uuid.uuid4().hex[:14]}"
    for attempt in (1, 2):
        await deliver_twice(http, invoice_event(
            membership["subscriptionId"], end, end + (end - start), stripe_plan,
            kind="payment_failed", invoice=invoice, attempt=attempt,
        ))
    await wait_current(http, user_id, status="past_due")
    failed = await events.wait_for(
        lambda e: e["type"] == "payment.failed" and e["userId"] == user_id, count=2
    )
    assert sorted(e["payload"]["attempt"] for e in failed) == [1, 2]
    assert {e["payload"]["code"] for e in failed} == {"PAY002"}
    assert {e["payload"]["membershipId"] for e in failed} == {membership["membershipId"]}
    assert (await current(http, user_id))["status"] == "past_due"
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert balance["total"] == 10, "a failed payment grants nothing"
    await deliver_twice(http, invoice_event(membership["subscriptionId"], end, end + (end - start),
                                            stripe_plan, invoice=invoice))
    recovered = await wait_current(http, user_id, starts_at(end), status="active")
    assert recovered["status"] == "active" and parse(recovered["currentPeriodStart"]) == end
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert [b["remaining"] for b in balance["batches"]] == [10], "policy none: the new period only"
    late_failure = invoice_event(membership["subscriptionId"], end, end + (end - start), stripe_plan,
                                 kind="payment_failed", invoice=invoice, attempt=3)
    await deliver_twice(http, late_failure)
    await events.wait_for(lambda e: False, timeout=1)
    assert (await current(http, user_id))["status"] == "active", "a paid invoice cannot fail later"


async def test_plan_change_swaps_the_stripe_item_and_the_next_grant_follows_the_new_plan(
    http, engine, webhook_registered, user_id
):
    basic, premium = await make_plan(http, credits=10), await make_plan(http, credits=25)
    membership = await subscribed(http, basic, user_id)
    refused = await subscribe(http, premium["id"], user_id)
    assert refused.status_code == 409 and refused.json()["code"] == "PAY004"
    changed = await subscribe(http, premium["id"], user_id, change=True)
    assert changed.status_code == 200, changed.text
    assert changed.json()["planId"] == premium["id"]
    assert changed.json()["membershipId"] == membership["membershipId"]
    assert (await current(http, user_id))["planId"] == premium["id"]
    same = await subscribe(http, premium["id"], user_id, change=True)
    assert same.status_code == 409 and same.json()["code"] == "PAY004"
    start, end = parse(membership["currentPeriodStart"]), parse(membership["currentPeriodEnd"])
    await deliver_twice(http, invoice_event(membership["subscriptionId"], end, end + (end - start),
                                            await stripe_plan_id(engine, premium["id"])))
    balance = await wait_balance(http, user_id, 25)
    assert balance["total"] == 25, "the renewal grants the new plan's credits (none rolled over)"


async def test_a_deleted_subscription_cancels_once_and_older_state_cannot_revive_it(
    http, events, webhook_registered, user_id
):
    plan = await make_plan(http, credits=5)
    membership = await subscribed(http, plan, user_id)
    sub = membership["subscriptionId"]
    deleted = subscription_event(sub, "deleted", "canceled", ended_at=int(time.time()))
    await deliver_twice(http, deleted)
    await wait_current(http, user_id, status="canceled")
    stale = subscription_event(sub, "updated", "active", created=deleted["created"] - 60)
    await deliver_twice(http, stale)
    await events.wait_for(lambda e: False, timeout=1)
    assert (await current(http, user_id))["status"] == "canceled"
    canceled = [e for e in events.events
                if e["type"] == "membership.canceled" and e["userId"] == user_id]
    assert len(canceled) == 1 and canceled[0]["payload"]["membershipId"] == membership["membershipId"]


async def test_trial_credits_are_a_batch_of_their_own_and_follow_the_policy(
    http, engine, stripe_client, webhook_registered, user_id
):
    plan = await make_plan(http, credits=20, rollover="none", trialDays=7, trialCredits=4)
    started = await subscribe(http, plan["id"], user_id, paymentMethodId=await new_card(stripe_client))
    assert started.status_code == 200, started.text
    sub = started.json()["subscriptionId"]
    stripe_plan = await stripe_plan_id(engine, plan["id"])
    now = datetime.now(UTC).replace(microsecond=0)
    trial_end = now + timedelta(days=7)
    # localstripe does not emulate trials: Stripe's $0 trial invoice, then the first paid one.
    # Newer than localstripe's own `created` (status incomplete), which may still arrive.
    trialing = subscription_event(sub, "updated", "trialing", created=int(time.time()) + 2,
                                  current_period_start=_ts(now), current_period_end=_ts(trial_end))
    await deliver_twice(http, trialing)
    await deliver_twice(http, invoice_event(sub, now, trial_end, stripe_plan, amount=0))
    balance = await wait_balance(http, user_id, 4)
    assert [(b["source"], b["remaining"]) for b in balance["batches"]] == [("MEMBERSHIP", 4)]
    assert (await wait_current(http, user_id, status="trialing"))["creditsThisPeriod"] == 4
    await deliver_twice(http, invoice_event(sub, trial_end, trial_end + timedelta(days=30),
                                            stripe_plan))
    balance = await wait_balance(http, user_id, 20)
    assert [b["remaining"] for b in balance["batches"]] == [20], "unused trial credits expired"
    assert (await wait_current(http, user_id, status="active"))["creditsThisPeriod"] == 20


async def test_concurrent_subscribes_make_one_membership_and_one_stripe_subscription(
    http, engine, stripe_client, webhook_registered, user_id
):
    plan = await make_plan(http, credits=6)
    answers = await asyncio.gather(*(subscribe(http, plan["id"], user_id) for _ in range(5)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409, 409, 409, 409], [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"PAY004"}
    async with engine.connect() as conn:
        customer = await conn.scalar(
            text("SELECT customer_id FROM stripe_customers WHERE user_id = :u"), {"u": user_id}
        )
        rows = await conn.scalar(
            text("SELECT count(*) FROM memberships WHERE user_id = :u"), {"u": user_id}
        )
    subs = await stripe_client.v1.subscriptions.list_async(params={"customer": customer})
    assert len(subs.data) == 1 and rows == 1
    assert (await wait_balance(http, user_id, 6))["total"] == 6


async def test_members_see_only_their_own_membership(http, webhook_registered, user_id):
    plan = await make_plan(http, credits=3)
    await subscribed(http, plan, user_id)
    other = await http.get(f"/payment/memberships/current?userId={user_id}", headers=auth("u-other"))
    assert other.status_code == 403 and other.json()["code"] == "PAY010"
    admin = await http.get(f"/payment/memberships/current?userId={user_id}",
                           headers=auth("ops", "admin"))
    assert admin.status_code == 200 and admin.json()["userId"] == user_id
    never = await http.get("/payment/memberships/current", headers=auth(f"{user_id}-new"))
    assert never.status_code == 404 and never.json()["code"] == "PAY008"
    anonymous = await http.post(f"/payment/memberships/{plan['id']}/subscribe", json={})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "PAY009"


async def test_a_declined_first_payment_leaves_an_incomplete_membership_to_pay_again(
    http, engine, stripe_client, webhook_registered, user_id
):
    plan = await make_plan(http, credits=9)
    declined = await subscribe(http, plan["id"], user_id, paymentMethodId="pm_card_chargeCustomerFail")
    assert declined.status_code == 200, declined.text
    first = declined.json()
    assert first["status"] == "incomplete" and first["clientSecret"], first
    retry = await subscribe(http, plan["id"], user_id)
    assert retry.status_code == 200 and retry.json()["membershipId"] == first["membershipId"]
    assert retry.json()["clientSecret"] == first["clientSecret"], "the same payment to confirm"
    other_plan = await subscribe(http, (await make_plan(http))["id"], user_id)
    assert other_plan.status_code == 409 and other_plan.json()["code"] == "PAY004"
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert balance["total"] == 0, "nothing paid, nothing granted"
    # The customer pays with another card: Stripe's paid invoice grants the period.
    async with engine.connect() as conn:
        customer = await conn.scalar(
            text("SELECT customer_id FROM stripe_customers WHERE user_id = :u"), {"u": user_id}
        )
    card = await stripe_client.v1.payment_methods.attach_async(
        "pm_card_visa", params={"customer": customer}
    )
    await stripe_client.v1.customers.update_async(
        customer, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    sub = await stripe_client.v1.subscriptions.retrieve_async(first["subscriptionId"])
    await stripe_client.v1.invoices.pay_async(str(sub.to_dict()["latest_invoice"]))
    assert (await wait_balance(http, user_id, 9))["total"] == 9
    assert (await wait_current(http, user_id, status="active"))["status"] == "active"


async def test_a_subscription_our_record_missed_is_found_through_its_stripe_metadata(
    http, engine, stripe_client, webhook_registered, user_id
):
    """The ingress crashed after Stripe created the subscription and before it stored the
    subscription id: Stripe's invoice event (no metadata) still reaches the membership."""
    plan = await make_plan(http, credits=11)
    await http.post("/payment/products/sync", headers=auth("ops", "admin"))
    membership_id = uuid.uuid4()
    customer = await stripe_client.v1.customers.create_async(params={"metadata": {"userId": user_id}})
    card = await stripe_client.v1.payment_methods.attach_async(
        "pm_card_visa", params={"customer": customer.id}
    )
    await stripe_client.v1.customers.update_async(
        customer.id, params={"invoice_settings": {"default_payment_method": card.id}}
    )
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO memberships (id, user_id, plan_id, status, stripe_customer_id) "
                 "VALUES (:id, :u, :p, 'incomplete', :c)"),
            {"id": membership_id, "u": user_id, "p": plan["id"], "c": customer.id},
        )
    await stripe_client.v1.subscriptions.create_async(params={
        "customer": customer.id,
        "items": [{"plan": await stripe_plan_id(engine, plan["id"])}],
        "metadata": {"userId": user_id, "membershipId": str(membership_id), "planId": plan["id"]},
    })
    assert (await wait_balance(http, user_id, 11))["total"] == 11
    found = await wait_current(http, user_id, status="active")
    assert found["membershipId"] == str(membership_id) and found["subscriptionId"].startswith("sub_")


async def test_stripe_sync_makes_a_product_and_a_new_stripe_plan_when_the_price_changes(
    http, engine, stripe_client
):
    plan = await make_plan(http, credits=4)
    admin = auth("ops", "admin")
    lines = (await http.post("/payment/products/sync", headers=admin)).json()
    line = next(li for li in lines if li.get("plan_id") == plan["id"])
    assert line["new_plan"] is True and line["product_id"].startswith("prod_")
    stripe_plan = await stripe_plan_id(engine, plan["id"])
    assert (await stripe_client.v1.plans.retrieve_async(stripe_plan)).amount == 2900
    await http.patch(f"/payment/memberships/plans/{plan['id']}", json={"price": 3500}, headers=admin)
    again = await http.post("/payment/products/sync", headers=admin)
    changed = await stripe_plan_id(engine, plan["id"])
    assert changed != stripe_plan, again.text
    assert (await stripe_client.v1.plans.retrieve_async(changed)).amount == 3500
    unchanged = (await http.post("/payment/products/sync", headers=admin)).json()
    assert next(li for li in unchanged if li.get("plan_id") == plan["id"])["new_plan"] is False
    assert await stripe_plan_id(engine, plan["id"]) == changed


async def test_a_period_is_granted_once_whatever_invoices_mention_it(
    http, engine, webhook_registered, user_id
):
    plan = await make_plan(http, credits=7)
    membership = await subscribed(http, plan, user_id)
    stripe_plan = await stripe_plan_id(engine, plan["id"])
    start, end = parse(membership["currentPeriodStart"]), parse(membership["currentPeriodEnd"])
    again = invoice_event(membership["subscriptionId"], start, end, stripe_plan)
    command_id = uuid.UUID((await post_event(http, again)).json()["commandId"])
    prorations = invoice_event(membership["subscriptionId"], start, end, stripe_plan)
    prorations["data"]["object"]["lines"]["data"][0]["proration"] = True
    ignored = await post_event(http, prorations)
    assert ignored.status_code == 200 and ignored.json().get("ignored") is True
    result = (await wait_processed(engine, [command_id]))[command_id]["result"]
    assert result["already"] is True and result["grantedBy"] != again["data"]["object"]["id"]
    history = (await http.get("/payment/credits/history", headers=auth(user_id))).json()["items"]
    assert [i["type"] for i in history].count("MEMBERSHIP_PAYMENT") == 1
    assert (await http.get("/payment/credits/balance", headers=auth(user_id))).json()["total"] == 7


# Attacks on memberships (the "money safety under attack" issue, cases 2 and 4).


async def cancel_now(http, user: str) -> None:
    response = await http.post("/payment/memberships/cancel", json={"immediately": True},
                               headers={**auth(user), "Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 200 and response.json()["status"] == "canceled", response.text


async def localstripe_announced(engine, sub: str, timeout: float = 20) -> None:
    """Wait until localstripe's own `customer.subscription.created` is applied, so a state
    the test signs afterwards is the newest one (Stripe's timestamps are seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as conn:
            event_id = await conn.scalar(
                text("SELECT event_id FROM stripe_events WHERE object_id = :s "
                     "AND type = 'customer.subscription.created'"), {"s": sub})
        if event_id is not None or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert event_id is not None, "localstripe announces every subscription it creates"
    command_id = envelope_of({"id": event_id})["id"]
    assert command_id in await wait_processed(engine, [command_id])


async def stripe_runs_its_trial(http, engine, stripe_client, sub: str, plan_id: str) -> bool:
    """What Stripe does for a subscription created with a trial: `trialing`, then a $0
    invoice for the trial period. localstripe records the trial it was asked for but
    emulates none of it, so the test sends Stripe's signed events. False if Stripe was
    not asked for a trial (then localstripe charged the card and announced the invoice)."""
    created = (await stripe_client.v1.subscriptions.retrieve_async(sub)).to_dict()
    days = created.get("trial_period_days")
    if not days:
        return False
    await localstripe_announced(engine, sub)
    now = datetime.now(UTC).replace(microsecond=0)
    trial_end = now + timedelta(days=days)
    await deliver_twice(http, subscription_event(
        sub, "updated", "trialing", current_period_start=_ts(now), current_period_end=_ts(trial_end)))
    await deliver_twice(http, invoice_event(sub, now, trial_end, await stripe_plan_id(engine, plan_id),
                                            amount=0))
    return True


async def trial_claims(engine, user: str) -> list[dict]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT t.membership_id, t.trial_days, t.card_fingerprint FROM membership_trials t "
                 "WHERE t.user_id = :u"), {"u": user})
        return [dict(r) for r in rows.mappings()]


async def ledger_kinds(http, user: str) -> list[tuple[str, int, bool | None]]:
    history = (await http.get("/payment/credits/history?limit=100", headers=auth(user))).json()
    return sorted((i["type"], i["credits"], i["metadata"].get("trial")) for i in history["items"])


async def test_cancel_and_resubscribe_never_gives_a_second_trial(
    http, engine, stripe_client, webhook_registered, user_id
):
    """Attack: subscribe -> trial credits -> cancel at once -> subscribe again, forever,
    with no card ever charged. A trial is claimed once per user, in Postgres, before
    Stripe hears of it; a returning member's subscription simply starts paid."""
    plan = await make_plan(http, credits=10, trialDays=7, trialCredits=20)
    expected = 0
    for attempt in range(3):
        started = await subscribe(http, plan["id"], user_id,
                                  paymentMethodId=await new_card(stripe_client))
        assert started.status_code == 200, started.text
        sub = started.json()["subscriptionId"]
        trial = await stripe_runs_its_trial(http, engine, stripe_client, sub, plan["id"])
        expected += 20 if trial else 10  # a trial's credits, else localstripe's paid invoice
        assert (await wait_balance(http, user_id, expected))["total"] == expected
        assert trial is (attempt == 0), f"attempt {attempt}: Stripe was asked for a trial again"
        await wait_current(http, user_id, status="trialing" if trial else "active")
        await cancel_now(http, user_id)
    assert expected == 40
    assert await ledger_kinds(http, user_id) == sorted(
        [("MEMBERSHIP_PAYMENT", 20, True)] + [("MEMBERSHIP_PAYMENT", 10, False)] * 2
    )
    claims = await trial_claims(engine, user_id)
    assert len(claims) == 1 and claims[0]["trial_days"] == 7 and claims[0]["card_fingerprint"]
    async with engine.connect() as conn:
        days = (await conn.execute(text(
            "SELECT trial_days FROM memberships WHERE user_id = :u ORDER BY created_at"),
            {"u": user_id})).scalars().all()
    assert days == [7, 0, 0], "a membership that did not claim the trial records none"
    assert await reconcile(engine) == []


async def test_one_card_gets_one_trial_whichever_account_brings_it(
    http, engine, stripe_client, webhook_registered, user_id
):
    """Attack: the same card on fresh accounts, one trial each. A trial is also claimed per
    card fingerprint when a payment method is given (localstripe fingerprints a card by its
    number, as Stripe does)."""
    plan = await make_plan(http, credits=10, trialDays=7, trialCredits=20)
    number = f"4242{uuid.uuid4().int % 10**12:012d}"
    first, second = await new_card(stripe_client, number), await new_card(stripe_client, number)
    prints = {(await stripe_client.v1.payment_methods.retrieve_async(pm)).card.fingerprint
              for pm in (first, second)}
    assert len(prints) == 1, "two payment methods of one card share its fingerprint"
    other_user, third_user = f"{user_id}-b", f"{user_id}-c"
    trials = {}
    for user, card, credits in ((user_id, first, 20), (other_user, second, 10),
                                (third_user, await new_card(stripe_client), 20)):
        started = await subscribe(http, plan["id"], user, paymentMethodId=card)
        assert started.status_code == 200, started.text
        trials[user] = await stripe_runs_its_trial(
            http, engine, stripe_client, started.json()["subscriptionId"], plan["id"])
        assert (await wait_balance(http, user, credits))["total"] == credits, user
    assert trials == {user_id: True, other_user: False, third_user: True}
    assert [c["card_fingerprint"] for c in await trial_claims(engine, user_id)] == list(prints)
    assert await trial_claims(engine, other_user) == []
    assert await reconcile(engine) == []


async def test_concurrent_accounts_with_one_card_claim_one_trial(
    http, engine, stripe_client, webhook_registered, user_id
):
    """The per-card rule is the database's (a unique index), not a read-then-write: five
    accounts subscribing at once with one card get one trial between them."""
    plan = await make_plan(http, credits=10, trialDays=7, trialCredits=20)
    number = f"4242{uuid.uuid4().int % 10**12:012d}"
    users = [f"{user_id}-{i}" for i in range(5)]
    cards = [await new_card(stripe_client, number) for _ in users]
    answers = await asyncio.gather(*(subscribe(http, plan["id"], u, paymentMethodId=c)
                                     for u, c in zip(users, cards, strict=True)))
    assert [a.status_code for a in answers] == [200] * 5, [a.text for a in answers]
    asked = [bool((await stripe_client.v1.subscriptions.retrieve_async(a.json()["subscriptionId"]))
                  .to_dict().get("trial_period_days")) for a in answers]
    assert asked.count(True) == 1, asked
    async with engine.connect() as conn:
        claims = await conn.scalar(text("SELECT count(*) FROM membership_trials "
                                        "WHERE user_id = ANY(:users)"), {"users": users})
    assert claims == 1


async def test_the_worker_grants_trial_credits_only_to_a_membership_that_claimed_the_trial(
    http, engine, stripe_client, webhook_registered, user_id
):
    """A membership row that says it has trial days but holds no claim (written by an
    older ingress, or by hand) gets no trial credits from a $0 first invoice: it is a
    period like any other (a 100% coupon), not a trial."""
    plan = await make_plan(http, credits=10, trialDays=7, trialCredits=20)
    await http.post("/payment/products/sync", headers=auth("ops", "admin"))
    membership_id = uuid.uuid4()
    customer = await stripe_client.v1.customers.create_async(params={"metadata": {"userId": user_id}})
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO memberships (id, user_id, plan_id, status, stripe_customer_id, "
                 "trial_days) VALUES (:id, :u, :p, 'incomplete', :c, 7)"),
            {"id": membership_id, "u": user_id, "p": plan["id"], "c": customer.id},
        )
    created = await stripe_client.v1.subscriptions.create_async(params={
        "customer": customer.id, "trial_period_days": 7,
        "items": [{"plan": await stripe_plan_id(engine, plan["id"])}],
        "metadata": {"userId": user_id, "membershipId": str(membership_id), "planId": plan["id"]},
    })
    assert await stripe_runs_its_trial(http, engine, stripe_client, created.id, plan["id"])
    assert (await wait_balance(http, user_id, 10))["total"] == 10
    assert await ledger_kinds(http, user_id) == [("MEMBERSHIP_PAYMENT", 10, False)]
    assert (await wait_current(http, user_id, status="active"))["status"] == "active"


async def test_subscribe_refuses_a_grant_above_the_balance_limit_and_a_refusal_keeps_no_trial(
    http, engine, stripe_client, settings, webhook_registered, user_id
):
    """MAX_CREDIT_BALANCE is checked before Stripe is called (PAY006), against the first
    grant: the trial's credits if a trial is claimed, else the period's. A refused
    subscribe (by us, or by Stripe) holds no trial claim: the next one gets the trial."""
    over = settings.max_credit_balance + 1
    card = await new_card(stripe_client)
    for plan in (await make_plan(http, credits=10, trialDays=7, trialCredits=over),
                 await make_plan(http, credits=over)):
        refused = await subscribe(http, plan["id"], user_id, paymentMethodId=card)
        assert refused.status_code == 422 and refused.json()["code"] == "PAY006", refused.text
        assert refused.json()["details"]["limit"] == settings.max_credit_balance
    plan = await make_plan(http, credits=10, trialDays=7, trialCredits=20)
    await http.post("/payment/products/sync", headers=auth("ops", "admin"))
    async with engine.begin() as conn:  # Stripe will refuse: the plan it is asked for is gone
        real = await conn.scalar(
            text("UPDATE membership_plans SET stripe_plan_id = 'plan_gone_' || id "
                 "WHERE id = :id RETURNING stripe_plan_id"), {"id": plan["id"]})
    refused = await subscribe(http, plan["id"], user_id, paymentMethodId=card)
    assert refused.status_code == 402 and refused.json()["code"] == "PAY002", refused.text
    async with engine.connect() as conn:
        customer = await conn.scalar(
            text("SELECT customer_id FROM stripe_customers WHERE user_id = :u"), {"u": user_id})
    subs = await stripe_client.v1.subscriptions.list_async(params={"customer": customer})
    assert subs.data == [], "nothing reached Stripe"
    assert await trial_claims(engine, user_id) == [], "a refused subscribe gives the trial back"
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE membership_plans SET stripe_plan_terms = NULL WHERE id = :id"),
                           {"id": plan["id"]})
    started = await subscribe(http, plan["id"], user_id, paymentMethodId=card)
    assert started.status_code == 200, started.text
    assert real.startswith("plan_gone_")
    assert await stripe_runs_its_trial(http, engine, stripe_client, started.json()["subscriptionId"],
                                       plan["id"])
    assert (await wait_balance(http, user_id, 20))["total"] == 20
    assert len(await trial_claims(engine, user_id)) == 1


# Case 4: periods 1, 3, then 2's invoice (a dunning retry collected late, or webhooks out of
# order). Per policy, with nothing spent: the balance and batches [(remaining, expiry as a
# period end index)] after period 3, then after period 2.
LATE_INVOICE_CASES = {
    "none": ((10, [(10, 3)]), (20, [(10, 2), (10, 3)])),
    "capped:5": ((15, [(5, 3), (10, 3)]), (25, [(5, 3), (10, 2), (10, 3)])),
    "one_cycle": ((20, [(10, 2), (10, 4)]), (30, [(10, 2), (10, 3), (10, 4)])),
}


@pytest.mark.parametrize("policy", list(LATE_INVOICE_CASES))
async def test_a_late_invoice_of_an_earlier_period_leaves_the_later_periods_credits(
    http, engine, webhook_registered, user_id, policy
):
    """Attack (or bad luck): period 2's invoice applied after period 3's used to roll over
    every open batch of the membership, expiring period 3's whole grant. A renewal now
    rolls over only the batches of periods that start before its own."""
    plan = await make_plan(http, credits=10, rollover=policy)
    membership = await subscribed(http, plan, user_id)
    sub = membership["subscriptionId"]
    stripe_plan = await stripe_plan_id(engine, plan["id"])
    start, end = parse(membership["currentPeriodStart"]), parse(membership["currentPeriodEnd"])
    ends = {n: start + (end - start) * n for n in range(1, 5)}
    (after_third, third_batches), (after_second, second_batches) = LATE_INVOICE_CASES[policy]
    await deliver_twice(http, invoice_event(sub, ends[2], ends[3], stripe_plan))
    await wait_current(http, user_id, starts_at(ends[2]))
    assert (await wait_balance(http, user_id, after_third))["total"] == after_third
    assert sorted(await batches(http, user_id)) == sorted(
        (n, ends[i] + GRACE) for n, i in third_batches)
    late = invoice_event(sub, ends[1], ends[2], stripe_plan)
    command_ids = []
    for _ in range(2):
        command_ids.append(uuid.UUID((await post_event(http, late)).json()["commandId"]))
    done = await wait_processed(engine, command_ids)
    assert {d["status"] for d in done.values()} == {"applied"}, done
    balance = await wait_balance(http, user_id, after_second)
    assert balance["total"] == after_second, (policy, await batches(http, user_id))
    assert sorted(await batches(http, user_id)) == sorted(
        (n, ends[i] + GRACE) for n, i in second_batches), "period 3's credits are intact"
    history = (await http.get("/payment/credits/history?limit=100", headers=auth(user_id))).json()
    paid = [i for i in history["items"] if i["type"] == "MEMBERSHIP_PAYMENT"]
    assert sorted(i["metadata"]["periodStart"] for i in paid) == sorted(
        moment.isoformat() for moment in (start, ends[1], ends[2])), "period 2 granted once"
    assert parse((await current(http, user_id))["currentPeriodStart"]) == ends[2]
    assert await reconcile(engine) == []
