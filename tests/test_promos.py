"""Promo codes on the real stack: admin rules, validate without side effects, apply under
concurrency, discounted purchases through localstripe, bonus clawback, trials, stats."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import text

from services.errors import InvalidPromoCode
from services.ledger.invariant_queries import reconcile
from services.promos import reservations
from services.promos.reservations import tidy_expired
from services.promos.rules import Target
from tests.conftest import auth, fresh_auth
from tests.test_fraud import flags_of
from tests.test_memberships import (
    invoice_event,
    make_plan,
    new_card,
    stripe_plan_id,
    stripe_runs_its_trial,
    trial_claims,
    wait_current,
)
from tests.test_purchases import intent_event, post_event, wait_balance

ADMIN = fresh_auth("promo-admin", "admin")


async def new_code(http, kind: str = "percentage", **fields) -> dict:
    values = {"percentage": {"percentOff": 20}, "fixed_amount": {"amountOff": 500, "currency": "usd"},
              "bonus_credits": {"bonusCredits": 5}, "free_trial": {"trialDays": 14}}[kind]
    body = {"code": f"T{uuid.uuid4().hex[:10]}".lower(), "kind": kind, **values, **fields}
    created = await http.post("/payment/promo-codes/", json=body, headers=ADMIN)
    assert created.status_code == 201, created.text
    return created.json()


async def apply(http, code: str, user: str, pack_id: str | None = None, plan_id: str | None = None):
    target = {"packId": pack_id} if pack_id else {"planId": plan_id}
    return await http.post("/payment/promo-codes/apply", json={"code": code, **target},
                           headers={**auth(user), "Idempotency-Key": str(uuid.uuid4())})


async def buy(http, pack_id: str, user: str, **promo) -> dict:
    response = await http.post(
        f"/payment/credit-packs/{pack_id}/purchase", json={"paymentMethodId": "pm_card_visa", **promo},
        headers={**auth(user), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def stats(http, code_id: str) -> dict:
    return (await http.get(f"/payment/promo-codes/{code_id}/stats", headers=ADMIN)).json()


async def wait_stat(http, code_id: str, name: str, value: int, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        figures = await stats(http, code_id)
        if figures[name] == value or time.monotonic() > deadline:
            return figures
        await asyncio.sleep(0.1)


async def test_admins_create_validated_codes_that_match_case_insensitively(http, pack):
    code = await new_code(http, usageLimit=3)
    assert code["code"] == code["code"].upper() and code["perUserLimit"] == 1
    for bad in ({"kind": "percentage", "percentOff": 60}, {"kind": "percentage", "percentOff": 5},
                {"kind": "fixed_amount", "amountOff": 500},
                {"kind": "fixed_amount", "amountOff": 6000, "currency": "usd"},
                {"kind": "free_trial", "trialDays": 0}, {"kind": "bonus_credits", "bonusCredits": -1},
                {"kind": "percentage", "percentOff": 20, "trialDays": 3},
                {"kind": "percentage", "percentOff": 20, "validFrom": "2027-01-02T00:00:00Z",
                 "validUntil": "2027-01-01T00:00:00Z"}):
        refused = await http.post("/payment/promo-codes/", json={"code": "BADCODE", **bad},
                                  headers=ADMIN)
        assert refused.status_code == 422 and refused.json()["code"] == "PAY007", bad
    twin = await http.post("/payment/promo-codes/",
                           json={"code": code["code"].lower(), "kind": "percentage", "percentOff": 10},
                           headers=ADMIN)
    assert twin.status_code == 409 and twin.json()["code"] == "PAY014"
    user = await http.post("/payment/promo-codes/", json={"code": "MINE", "kind": "percentage",
                                                          "percentOff": 10}, headers=auth("u-x"))
    assert user.status_code == 403
    preview = await http.post("/payment/promo-codes/validate",
                              json={"code": code["code"].lower(), "packId": pack["id"]},
                              headers=auth("u-shopper"))
    assert preview.status_code == 200, preview.text
    assert preview.json() == {"valid": True, "code": code["code"], "originalPrice": 1800,
                              "discount": 360, "finalPrice": 1440, "currency": "usd",
                              "bonusCredits": 0, "trialDays": 0}
    off = await http.patch(f"/payment/promo-codes/{code['id']}", json={"active": False}, headers=ADMIN)
    assert off.json()["active"] is False
    gone = await http.post("/payment/promo-codes/validate",
                           json={"code": code["code"], "packId": pack["id"]}, headers=auth("u-shopper"))
    assert gone.status_code == 400 and gone.json()["code"] == "PAY003"
    assert gone.json()["details"]["reason"] == "unknown"
    listed = {c["id"]: c for c in (await http.get("/payment/promo-codes/", headers=ADMIN)).json()}
    assert listed[code["id"]]["liveUses"] == 0 and listed[code["id"]]["active"] is False


async def test_fifty_concurrent_applies_of_ten_uses_left_give_exactly_ten(http, pack):
    code = await new_code(http, usageLimit=10)
    users = [f"u-rush-{i}-{uuid.uuid4().hex[:4]}" for i in range(50)]
    answers = await asyncio.gather(*(apply(http, code["code"], u, pack["id"]) for u in users))
    won = [a for a in answers if a.status_code == 200]
    assert len(won) == 10, [a.text for a in answers if a.status_code != 400][:3]
    assert {a.json()["details"]["reason"] for a in answers if a.status_code != 200} == {
        "usage_limit_reached"}
    same = f"u-twice-{uuid.uuid4().hex[:6]}"
    other = await new_code(http)
    pair = await asyncio.gather(*(apply(http, other["code"], same, pack["id"]) for _ in range(2)))
    assert sorted(a.status_code for a in pair) == [200, 400]
    assert next(a for a in pair if a.status_code == 400).json()["details"]["reason"] == "already_used"
    assert (await stats(http, code["id"]))["liveReservations"] == 10


async def test_a_discounted_purchase_charges_less_grants_once_and_redeems_the_use(
    http, engine, pack, stripe_client, webhook_registered, user_id
):
    code = await new_code(http, "percentage", percentOff=25)
    applied = await apply(http, code["code"], user_id, pack["id"])
    assert applied.status_code == 200, applied.text
    redemption = applied.json()["redemptionId"]
    assert applied.json()["finalPrice"] == 1350
    started = await buy(http, pack["id"], user_id, redemptionId=redemption)
    assert (started["amount"], started["listPrice"], started["discount"]) == (1350, 1800, 450)
    intent = await stripe_client.v1.payment_intents.retrieve_async(started["paymentIntentId"])
    assert intent.amount == 1350, "Stripe charges the discounted price"
    await stripe_client.v1.payment_intents.confirm_async(started["paymentIntentId"])
    assert (await wait_balance(http, user_id, 23))["total"] == 23
    history = (await http.get("/payment/credits/history", headers=auth(user_id))).json()["items"]
    bought = next(i for i in history if i["type"] == "CREDIT_PURCHASE")
    assert bought["amount"] == 1350 and bought["metadata"]["promoCode"] == code["code"]
    assert bought["metadata"]["discount"] == 450
    figures = await stats(http, code["id"])
    assert (figures["redemptions"], figures["discountGiven"], figures["revenue"]) == (1, 450, 1350)
    again = await http.post(
        f"/payment/credit-packs/{pack['id']}/purchase", json={"redemptionId": redemption},
        headers={**auth(user_id), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert again.status_code == 400 and again.json()["details"]["reason"] == "expired", again.text
    assert await reconcile(engine) == []


async def test_bonus_credits_have_their_own_expiry_and_a_refund_claws_them_back(
    http, engine, pack, user_id
):
    code = await new_code(http, "bonus_credits", bonusCredits=6, bonusExpiryDays=30)
    started = await buy(http, pack["id"], user_id, promoCode=code["code"].lower())
    assert (started["promoBonusCredits"], started["amount"]) == (6, 1800)
    await post_event(http, intent_event(started["paymentIntentId"], user_id, 1800))
    balance = await wait_balance(http, user_id, 29)
    assert balance["total"] == 29
    soon = [b for b in balance["batches"] if b["amount"] == 6]
    expiry = datetime.fromisoformat(soon[0]["expiresAt"].replace("Z", "+00:00"))
    assert abs(expiry - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)
    from tests.test_purchases import refund_event

    await post_event(http, refund_event(started["paymentIntentId"], 1800))
    assert (await wait_balance(http, user_id, 0))["total"] == 0, "bonus clawed back with the rest"
    figures = await stats(http, code["id"])
    assert figures["redemptions"] == 1, "a refunded purchase's use stays counted"
    assert (figures["bonusCreditsGranted"], figures["bonusCreditsClawedBack"]) == (6, 6)
    assert await reconcile(engine) == []


async def test_a_reservation_is_released_by_a_failed_payment_and_by_time(
    http, engine, pack, user_id
):
    code = await new_code(http, usageLimit=1)
    started = await buy(http, pack["id"], user_id, promoCode=code["code"])
    taken = await apply(http, code["code"], f"{user_id}-2", pack["id"])
    assert taken.json()["details"]["reason"] == "usage_limit_reached"
    failed = intent_event(started["paymentIntentId"], user_id, started["amount"], kind="payment_failed")
    await post_event(http, failed)
    await wait_stat(http, code["id"], "released", 1)
    second = await apply(http, code["code"], f"{user_id}-2", pack["id"])
    assert second.status_code == 200, "a failed payment gives the use back"
    async with engine.begin() as conn:  # the customer walked away: let the TTL pass
        await conn.execute(text("UPDATE promo_reservations SET expires_at = now() - interval '1 s' "
                                "WHERE id = :id"), {"id": second.json()["redemptionId"]})
    third = await apply(http, code["code"], f"{user_id}-3", pack["id"])
    assert third.status_code == 200, third.text
    async with engine.begin() as conn:
        assert await tidy_expired(conn, datetime.now(UTC)) >= 1
    assert (await stats(http, code["id"]))["released"] == 2


async def test_a_failed_payment_that_later_succeeds_still_uses_up_the_code(
    http, engine, pack, worker, user_id
):
    """The failure released the use; the money then came at the discounted price."""
    code = await new_code(http, percentOff=25)
    started = await buy(http, pack["id"], user_id, promoCode=code["code"])
    failed = intent_event(started["paymentIntentId"], user_id, 1350, kind="payment_failed")
    await post_event(http, failed)
    await wait_stat(http, code["id"], "released", 1)
    await post_event(http, intent_event(started["paymentIntentId"], user_id, 1350))
    assert (await wait_balance(http, user_id, 23))["total"] == 23
    figures = await wait_stat(http, code["id"], "redemptions", 1)
    assert (figures["redemptions"], figures["released"]) == (1, 0)
    again = await apply(http, code["code"], user_id, pack["id"])
    assert again.status_code == 400 and again.json()["details"]["reason"] == "already_used"
    assert await reconcile(engine) == []


async def test_a_free_trial_code_gives_its_days_to_a_new_membership(
    http, engine, stripe_client, webhook_registered, user_id
):
    plan = await make_plan(http, credits=12)
    code = await new_code(http, "free_trial", trialDays=14, planIds=[plan["id"]])
    wrong = await apply(http, code["code"], user_id, plan_id=(await make_plan(http))["id"])
    assert wrong.json()["details"]["reason"] == "not_applicable"
    started = await http.post(
        f"/payment/memberships/{plan['id']}/subscribe",
        json={"paymentMethodId": await new_card(stripe_client), "promoCode": code["code"]},
        headers={**auth(user_id), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert started.status_code == 200, started.text
    async with engine.connect() as conn:
        trial = await conn.scalar(text("SELECT trial_days FROM memberships WHERE id = :id"),
                                  {"id": started.json()["membershipId"]})
    assert trial == 14
    assert (await stats(http, code["id"]))["redemptions"] == 1
    now = datetime.now(UTC).replace(microsecond=0)
    sub = started.json()["subscriptionId"]
    trial_invoice = invoice_event(sub, now - timedelta(days=40), now - timedelta(days=26),
                                  await stripe_plan_id(engine, plan["id"]), amount=0)
    assert (await post_event(http, trial_invoice)).status_code == 200
    found = await wait_current(http, user_id, status="trialing")
    assert found["status"] == "trialing" and found["creditsThisPeriod"] == 0


async def test_many_accounts_redeeming_one_code_from_one_address_are_flagged(http, pack):
    code = await new_code(http, usageLimit=100)
    users = [f"u-farm-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    for user in users:
        started = await buy(http, pack["id"], user, promoCode=code["code"])
        await post_event(http, intent_event(started["paymentIntentId"], user, started["amount"]))
        await wait_balance(http, user, 23)
    flags = await flags_of(http, users[3])
    assert [f["rule"] for f in flags] == ["promo_abuse"]
    assert flags[0]["details"]["accounts"] == 4 and flags[0]["details"]["code"] == code["code"]


async def touchable(conn, code_id: str, users: list[str]) -> list:
    """Every row validate could write: its code and the reservations of the code or the users.

    Only these, not whole tables: commands of earlier tests may still be applied while this
    test runs, and they change purchases and the ledger without validate having done a thing.
    """
    rows = await conn.execute(text(
        "SELECT 'code', c::text FROM promo_codes c WHERE c.id = :code "
        "UNION ALL SELECT 'reservation', r::text FROM promo_reservations r "
        "WHERE r.promo_code_id = :code OR r.user_id = ANY(:users) ORDER BY 1, 2"),
        {"code": code_id, "users": users})
    return [tuple(row) for row in rows]


async def test_validate_never_changes_anything(http, engine, pack):
    limited = await new_code(http, usageLimit=2, minimumAmount=1000)
    codes = [limited["code"], limited["code"].lower(), "NOSUCHCODE", "x"]
    targets = [Target("pack", pack["id"], pack["price"], "usd"), Target("plan", "plan_basic", 5900, "usd")]
    users = [f"u-a-{uuid.uuid4().hex[:6]}", f"u-b-{uuid.uuid4().hex[:6]}", "demo-alice"]
    calls = st.lists(st.tuples(st.sampled_from(codes), st.sampled_from(targets),
                               st.sampled_from(users)), max_size=8)
    sequences: list[list] = []

    @hypothesis_settings(max_examples=25, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(calls)
    def collect(sequence):
        sequences.append(sequence)

    collect()  # hypothesis draws the call sequences; they run below on the test's loop
    assert len(sequences) >= 20
    answers = {"valid": 0, "refused": 0}
    async with engine.connect() as conn:
        code_id = (await conn.execute(text("SELECT id FROM promo_codes WHERE code = :c"),
                                      {"c": limited["code"].upper()})).scalar_one()
        before = await touchable(conn, code_id, users)
        await conn.commit()
        # One transaction around every call: Postgres gives a transaction an id only when
        # it writes a row or locks one (FOR UPDATE), so none at the end proves validate
        # did neither, whatever else runs on the server meanwhile.
        for sequence in sequences:
            for code, target, user in sequence:
                try:
                    await reservations.validate(conn, code, target, user, datetime.now(UTC))
                    answers["valid"] += 1
                except InvalidPromoCode:
                    answers["refused"] += 1
        assigned = (await conn.execute(text("SELECT txid_current_if_assigned()"))).scalar()
        await conn.rollback()
        after = await touchable(conn, code_id, users)
    assert assigned is None
    assert answers["valid"] and answers["refused"], answers
    assert after == before


async def test_a_late_success_after_a_failed_payment_counts_the_use_and_flags_the_overrun(
    http, engine, pack, user_id
):
    """Attack: a failed payment (or the 30-minute expiry) releases the reservation, but the
    PaymentIntent stays payable; paid later, it used to grant at the discounted price and
    count no use. Every discounted payment that succeeds now counts its use, past the
    limits if it must, and a use past a limit raises `promo_over_limit` (medium, no freeze)."""
    code = await new_code(http, usageLimit=1)
    first, second = user_id, f"{user_id}-b"
    started = await buy(http, pack["id"], first, promoCode=code["code"])
    assert started["amount"] == 1440
    await post_event(http, intent_event(started["paymentIntentId"], first, 1440, kind="payment_failed"))
    await wait_stat(http, code["id"], "released", 1)
    other = await buy(http, pack["id"], second, promoCode=code["code"])
    await post_event(http, intent_event(other["paymentIntentId"], second, 1440))
    assert (await wait_balance(http, second, 23))["total"] == 23
    # The first customer pays the same PaymentIntent after all (a retry with another card).
    await post_event(http, intent_event(started["paymentIntentId"], first, 1440))
    assert (await wait_balance(http, first, 23))["total"] == 23, "paid, so granted"
    figures = await wait_stat(http, code["id"], "redemptions", 2)
    assert (figures["redemptions"], figures["discountGiven"], figures["revenue"]) == (2, 720, 2880)
    listed = {c["id"]: c for c in (await http.get("/payment/promo-codes/", headers=ADMIN)).json()}
    assert (listed[code["id"]]["liveUses"], listed[code["id"]]["redemptions"]) == (2, 2)
    async with engine.connect() as conn:
        statuses = (await conn.execute(text(
            "SELECT user_id, status FROM promo_reservations WHERE promo_code_id = :c ORDER BY user_id"),
            {"c": code["id"]})).all()
    assert [tuple(r) for r in statuses] == [(first, "redeemed"), (second, "redeemed")]
    flags = await flags_of(http, first)
    assert [(f["rule"], f["severity"], f["subject"]) for f in flags] == [
        ("promo_over_limit", "medium", code["code"])]
    assert flags[0]["details"]["uses"] == 2 and flags[0]["details"]["usageLimit"] == 1
    assert flags[0]["frozenCredits"] == 0
    balance = (await http.get("/payment/credits/balance", headers=auth(first))).json()
    assert (balance["available"], balance["held"]) == (23, 0), "medium: nothing frozen"
    assert await flags_of(http, second, timeout=0.5) == []
    # The per-user limit too: the same customer fails, buys again with the code, then
    # pays the first PaymentIntent as well.
    mine = await new_code(http)  # perUserLimit 1, no usage limit
    third = f"{user_id}-c"
    failed = await buy(http, pack["id"], third, promoCode=mine["code"])
    await post_event(http, intent_event(failed["paymentIntentId"], third, 1440, kind="payment_failed"))
    await wait_stat(http, mine["id"], "released", 1)
    again = await buy(http, pack["id"], third, promoCode=mine["code"])
    for intent in (again["paymentIntentId"], failed["paymentIntentId"]):
        await post_event(http, intent_event(intent, third, 1440))
    assert (await wait_balance(http, third, 46))["total"] == 46
    assert (await wait_stat(http, mine["id"], "redemptions", 2))["redemptions"] == 2
    flagged = await flags_of(http, third)
    assert [(f["rule"], f["details"]["userUses"], f["details"]["perUserLimit"]) for f in flagged] == [
        ("promo_over_limit", 2, 1)]
    assert await reconcile(engine) == []


async def test_a_free_trial_code_is_refused_to_an_account_or_a_card_that_had_a_trial(
    http, engine, stripe_client, webhook_registered, user_id
):
    """A free_trial code is all trial: for a user who already had a trial (any plan's or any
    code's), or with a card that had one on another account, it is refused with PAY003
    `trial_used` rather than quietly starting a paid subscription."""
    plan = await make_plan(http, credits=10, trialDays=7, trialCredits=5)
    code = await new_code(http, "free_trial", trialDays=14)
    card_number = f"4242{uuid.uuid4().int % 10**12:012d}"
    started = await http.post(
        f"/payment/memberships/{plan['id']}/subscribe",
        json={"paymentMethodId": await new_card(stripe_client, card_number)},
        headers={**auth(user_id), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert started.status_code == 200, started.text
    assert await stripe_runs_its_trial(http, engine, stripe_client, started.json()["subscriptionId"],
                                       plan["id"])
    assert (await wait_balance(http, user_id, 5))["total"] == 5
    for call in ("validate", "apply"):
        refused = await http.post(f"/payment/promo-codes/{call}",
                                  json={"code": code["code"], "planId": plan["id"]},
                                  headers={**auth(user_id), "Idempotency-Key": str(uuid.uuid4())})
        assert refused.status_code == 400 and refused.json()["code"] == "PAY003", refused.text
        assert refused.json()["details"]["reason"] == "trial_used"
    # Another account with the same card: the code is refused at subscribe, when the card
    # is known, and nothing is left behind (no subscription, no claim, the use given back).
    other = f"{user_id}-b"
    refused = await http.post(
        f"/payment/memberships/{plan['id']}/subscribe",
        json={"paymentMethodId": await new_card(stripe_client, card_number), "promoCode": code["code"]},
        headers={**auth(other), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert refused.status_code == 400 and refused.json()["details"]["reason"] == "trial_used", refused.text
    assert await trial_claims(engine, other) == []
    assert (await stats(http, code["id"]))["liveReservations"] == 0
    async with engine.connect() as conn:
        customer = await conn.scalar(
            text("SELECT customer_id FROM stripe_customers WHERE user_id = :u"), {"u": other})
    assert (await stripe_client.v1.subscriptions.list_async(params={"customer": customer})).data == []
    # Without the code, the same account subscribes and simply pays.
    paid = await http.post(
        f"/payment/memberships/{plan['id']}/subscribe",
        json={"paymentMethodId": await new_card(stripe_client, card_number)},
        headers={**auth(other), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert paid.status_code == 200, paid.text
    assert not await stripe_runs_its_trial(http, engine, stripe_client, paid.json()["subscriptionId"],
                                           plan["id"])
    assert (await wait_balance(http, other, 10))["total"] == 10
    assert await reconcile(engine) == []
