"""The support console's read side against the running stack: one customer with a real
history (a membership and a discounted purchase paid through localstripe, grants, a
charge, holds captured in part and released, a refund of the charge, a money refund of
the purchase, an expiry, a dispute, the emails sent), then what the console shows.

The customer is built once for the module through the normal paths (HTTP, Stripe's
webhooks, the operator's expiry command) and only read afterwards, so each test reads
the same history whatever order they run in.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text

from devtools.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from schemas import support_api
from schemas.base import WireModel
from schemas.commands import ExpireCredits, ExpirePayload
from services.ledger.invariant_queries import reconcile
from services.support.running_balance import Step, balances_after
from tests.conftest import JWT_SECRET, ChildProcess, Ingress, auth, fresh_auth, publish, wait_processed
from tests.test_memberships import make_plan
from tests.test_notifications import SmtpServer
from tests.test_promos import new_code
from tests.test_purchases import dispute_event, post_event

ADMIN = fresh_auth("support-agent", "admin")
ROUTES = (
    "/payment/admin/customers/search?q={user}",
    "/payment/admin/customers/{user}",
    "/payment/admin/customers/{user}/explanation",
    "/payment/admin/batches/{batch}",
)


def user_token(user: str, email: str) -> dict[str, str]:
    """A user's bearer token that carries their email, as the platform's would."""
    now = int(time.time())
    claims = {"sub": user, "roles": ["user"], "aud": DEFAULT_AUDIENCE, "iss": DEFAULT_ISSUER,
              "iat": now, "exp": now + 600, "email": email}
    return {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, 'HS256')}"}


@dataclass
class Customer:
    user: str
    email: str
    purchase_id: str
    payment_intent: str
    stripe_customer: str
    code: str
    charge_tx: str
    capture_tx: str
    short_batch: str
    dispute: str


async def settle(http: httpx.AsyncClient, user: str, done: Any, timeout: float = 30) -> dict:
    """The user's balance once `done(balance)` holds (the ledger applies asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        balance = (await http.get("/payment/credits/balance", params={"userId": user},
                                  headers=ADMIN)).json()
        if done(balance) or time.monotonic() > deadline:
            assert done(balance), balance
            return balance
        await asyncio.sleep(0.1)


async def command(http: httpx.AsyncClient, user: str, kind: str, payload: dict) -> dict:
    """A booking service's command over HTTP, answered once the ledger applied it."""
    body = {"id": str(uuid.uuid4()), "type": kind, "userId": user, "payload": payload}
    response = await http.post("/payment/commands/", json=body, headers=auth("bookings", "service"))
    assert response.status_code == 200, response.text
    return response.json()


async def grant(http: httpx.AsyncClient, user: str, credits: int, **extra: Any) -> dict:
    response = await http.post(
        "/payment/credits/grant",
        json={"userId": user, "credits": credits, "reason": "goodwill", **extra},
        headers={**ADMIN, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def notify(settings, smtp: SmtpServer, relay) -> Iterator[ChildProcess]:
    """The notify worker, so the customer's receipt is really sent (and recorded)."""
    configured = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": smtp.port,
                                             "smtp_timeout": 5.0})
    child = ChildProcess("notify", configured, name="notify-support").start()
    yield child
    child.stop()


@pytest.fixture(scope="module")
async def http_module(ingress: Ingress) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingress.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
async def customer(
    http_module, engine, settings, producer, stripe_client, webhook_registered, notify, smtp
) -> Customer:
    http = http_module
    user, email = f"u-{uuid.uuid4().hex[:12]}", f"{uuid.uuid4().hex[:10]}@example.test"
    mine = user_token(user, email)
    # A membership: 10 credits a period, up to 5 carried over (localstripe charges it).
    plan = await make_plan(http, credits=10, rollover="capped:5")
    subscribed = await http.post(f"/payment/memberships/{plan['id']}/subscribe",
                                 json={"paymentMethodId": "pm_card_visa"},
                                 headers={**mine, "Idempotency-Key": str(uuid.uuid4())})
    assert subscribed.status_code == 200, subscribed.text
    await settle(http, user, lambda b: b["total"] == 10)
    # A pack of 20 + 3 bought with a 10% code, paid in localstripe.
    pack_id = f"pack_{uuid.uuid4().hex[:8]}"
    made = await http.post("/payment/credit-packs/", headers=ADMIN, json={
        "id": pack_id, "name": "Support 20 + 3", "credits": 20, "bonusCredits": 3,
        "price": 1800, "currency": "usd"})
    assert made.status_code == 201, made.text
    code = await new_code(http, "percentage", percentOff=10)
    started = await http.post(f"/payment/credit-packs/{pack_id}/purchase",
                              json={"paymentMethodId": "pm_card_visa", "promoCode": code["code"]},
                              headers={**mine, "Idempotency-Key": str(uuid.uuid4())})
    assert started.status_code == 200, started.text
    bought = started.json()
    assert bought["amount"] == 1620
    await stripe_client.v1.payment_intents.confirm_async(bought["paymentIntentId"])
    await settle(http, user, lambda b: b["total"] == 33)
    await grant(http, user, 10)
    # Spends: a charge across two batches, a hold captured in part, a hold released.
    charge = await command(http, user, "credits.charge", {"credits": 12, "reference": "booking-a"})
    held = await command(http, user, "credits.hold", {"credits": 6, "reference": "booking-b"})
    captured = await command(http, user, "credits.capture", {"holdId": held["holdId"], "credits": 4})
    other = await command(http, user, "credits.hold", {"credits": 3, "reference": "booking-c"})
    await command(http, user, "credits.release", {"holdId": other["holdId"], "reason": "cancelled"})
    await command(http, user, "credits.refund", {"transactionId": charge["transactionId"],
                                                 "credits": 5, "reason": "class cancelled"})
    # Money back in Stripe for part of the purchase: its credits' share is taken back.
    async with engine.connect() as conn:
        purchase = (await conn.execute(
            text("SELECT id, grant_transaction_id FROM purchases WHERE payment_intent_id = :pi"),
            {"pi": bought["paymentIntentId"]})).one()
        stripe_customer = await conn.scalar(
            text("SELECT customer_id FROM stripe_customers WHERE user_id = :u"), {"u": user})
    refunded = await http.post("/payment/credits/refund", headers={
        **ADMIN, "Idempotency-Key": str(uuid.uuid4())}, json={
        "userId": user, "transactionId": str(purchase.grant_transaction_id), "amount": 600,
        "reason": "partial goodwill refund"})
    assert refunded.status_code == 200, refunded.text
    # A short-lived grant that the operator's expiry command expires.
    soon = datetime.now(UTC) + timedelta(seconds=3)
    short = await grant(http, user, 4, expiresAt=soon.isoformat())
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.5)
    expire = ExpireCredits(user_id=user, payload=ExpirePayload(batch_id=uuid.UUID(short["batchId"])))
    await publish(producer, settings, expire)
    done = await wait_processed(engine, [expire.id])
    assert done[expire.id]["status"] == "applied", done
    # A dispute opens: the purchase's unspent credits are frozen and a fraud flag raised.
    dispute = f"dp_{uuid.uuid4().hex[:10]}"
    opened = await post_event(http, dispute_event(bought["paymentIntentId"], dispute, "created",
                                                  "needs_response"))
    assert opened.status_code == 200, opened.text
    await settle(http, user, lambda b: b["held"] > 0)
    assert await smtp.inbox.wait_for(email, count=1), "the receipt was sent"
    return Customer(user=user, email=email, purchase_id=str(purchase.id),
                    payment_intent=bought["paymentIntentId"], stripe_customer=stripe_customer,
                    code=code["code"], charge_tx=charge["transactionId"],
                    capture_tx=captured["transactionId"], short_batch=short["batchId"],
                    dispute=dispute)


async def explanation(http: httpx.AsyncClient, user: str, **params: Any) -> dict:
    response = await http.get(f"/payment/admin/customers/{user}/explanation", params=params,
                              headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def all_entries(http: httpx.AsyncClient, user: str, limit: int) -> list[dict]:
    entries, cursor = [], None
    while True:
        page = await explanation(http, user, limit=limit, **({"cursor": cursor} if cursor else {}))
        assert len(page["entries"]) <= limit
        entries += page["entries"]
        assert page["hasMore"] == (page["nextCursor"] is not None)
        if not page["hasMore"]:
            return entries
        cursor = page["nextCursor"]


# --- search ---------------------------------------------------------------------------


async def test_search_finds_the_customer_by_each_key(http, customer):
    keys = {
        "userId": customer.user,
        "email": customer.email.upper(),
        "stripeCustomerId": customer.stripe_customer,
        "paymentIntentId": customer.payment_intent,
        "transactionId": customer.charge_tx,
    }
    for matched_by, q in keys.items():
        response = await http.get("/payment/admin/customers/search", params={"q": q}, headers=ADMIN)
        assert response.status_code == 200, response.text
        matches = response.json()["matches"]
        assert [(m["userId"], m["matchedBy"]) for m in matches] == [(customer.user, matched_by)], q
    by_email = await http.get("/payment/admin/customers/search", params={"q": customer.email},
                              headers=ADMIN)
    [match] = by_email.json()["matches"]
    assert {"purchases.email", "memberships.email", "sent_notifications.recipient"} <= set(
        match["detail"].split(", ")), "every place the address is kept is named"
    nobody = await http.get("/payment/admin/customers/search", params={"q": str(uuid.uuid4())},
                            headers=ADMIN)
    assert nobody.status_code == 200 and nobody.json() == {"matches": []}


@pytest.mark.parametrize("q", [None, "", "   ", "x" * 256, "a\x00b", "line\nbreak"])
async def test_search_refuses_an_empty_or_too_long_query_with_pay007(http, q):
    params = {} if q is None else {"q": q}
    response = await http.get("/payment/admin/customers/search", params=params, headers=ADMIN)
    assert response.status_code == 422 and response.json()["code"] == "PAY007", response.text


# --- the customer page ----------------------------------------------------------------


async def test_the_customer_page_shows_every_section(http, customer):
    page = await http.get(f"/payment/admin/customers/{customer.user}", headers=ADMIN)
    assert page.status_code == 200, page.text
    body = page.json()
    balance = (await http.get("/payment/credits/balance", params={"userId": customer.user},
                              headers=ADMIN)).json()
    assert body["balance"] == {k: balance[k] for k in ("available", "held", "total")}
    assert [(b["id"], b["remaining"]) for b in body["batches"]] == [
        (b["id"], b["remaining"]) for b in balance["batches"]], "open batches in spend order"
    assert customer.short_batch not in {b["id"] for b in body["batches"]}, "expired: not open"
    assert body["email"] == customer.email and body["stripeCustomerId"] == customer.stripe_customer
    [freeze] = body["holds"]
    assert freeze["kind"] == "freeze" and freeze["credits"] == body["balance"]["held"]
    assert freeze["reference"].startswith("dispute:")
    membership = body["membership"]
    assert (membership["status"], membership["creditsPerPeriod"], membership["creditsThisPeriod"],
            membership["rollover"]) == ("active", 10, 10, "capped:5")
    assert membership["currentPeriodStart"] < membership["currentPeriodEnd"]
    [purchase] = body["purchases"]
    assert purchase["purchaseId"] == customer.purchase_id
    assert purchase["paymentIntentId"] == customer.payment_intent
    assert (purchase["amount"], purchase["listAmount"], purchase["discount"], purchase["currency"]) == (
        1620, 1800, 180, "usd")
    assert (purchase["credits"], purchase["bonusCredits"], purchase["promoCode"]) == (
        20, 3, customer.code)
    assert purchase["refundedAmount"] == 600
    assert [(r["amount"], r["currency"]) for r in purchase["refunds"]] == [(600, "usd")]
    assert [(d["disputeId"], d["status"]) for d in purchase["disputes"]] == [(customer.dispute, "open")]
    [redemption] = body["promoRedemptions"]
    assert (redemption["code"], redemption["status"], redemption["purchaseId"], redemption["discount"]) == (
        customer.code, "redeemed", customer.purchase_id, 180)
    assert any(f["status"] == "open" for f in body["fraudFlags"]), body["fraudFlags"]
    receipts = [n for n in body["notifications"] if n["template"] == "receipt"]
    assert [(n["status"], n["recipient"]) for n in receipts] == [("sent", customer.email)]
    assert receipts[0]["sentAt"] is not None


async def test_a_customer_the_service_does_not_know_is_404_pay008(http):
    response = await http.get(f"/payment/admin/customers/u-{uuid.uuid4().hex}", headers=ADMIN)
    assert response.status_code == 404 and response.json()["code"] == "PAY008"
    explained = await http.get(f"/payment/admin/customers/u-{uuid.uuid4().hex}/explanation",
                               headers=ADMIN)
    assert explained.status_code == 404 and explained.json()["code"] == "PAY008"
    batch = await http.get(f"/payment/admin/batches/{uuid.uuid4()}", headers=ADMIN)
    assert batch.status_code == 404 and batch.json()["code"] == "PAY008"


# --- the balance explanation ----------------------------------------------------------


async def test_the_running_balance_ends_at_the_balance_and_every_transaction_balances(http, customer):
    page = await explanation(http, customer.user, limit=100)
    entries = page["entries"]
    balance = (await http.get("/payment/credits/balance", params={"userId": customer.user},
                              headers=ADMIN)).json()
    assert page["balance"] == {k: balance[k] for k in ("available", "held", "total")}
    assert (entries[0]["balanceAfter"], entries[0]["heldAfter"]) == (balance["available"],
                                                                     balance["held"])
    # Each step is the one before it plus its change, down to an empty account.
    for newer, older in pairwise(entries):
        assert older["balanceAfter"] == newer["balanceAfter"] - newer["availableChange"], newer
        assert older["heldAfter"] == newer["heldAfter"] - newer["heldChange"], newer
    assert (entries[-1]["balanceAfter"] - entries[-1]["availableChange"],
            entries[-1]["heldAfter"] - entries[-1]["heldChange"]) == (0, 0)
    for entry in entries:
        assert sum(p["amount"] for p in entry["postings"]) == 0, entry
        mine = [p for p in entry["postings"] if p["account"] == customer.user]
        if entry["availableChange"] + entry["heldChange"]:
            assert len(mine) < len(entry["postings"]), "double entry: the other leg is shown"
        assert sum(p["amount"] for p in mine if p["bucket"] == "available") == entry["availableChange"]
    kinds = {e["type"] for e in entries}
    assert {"MEMBERSHIP_PAYMENT", "CREDIT_PURCHASE", "PROMO_BONUS", "ADJUSTMENT", "CREDIT_USAGE",
            "CREDIT_HOLD", "CREDIT_RELEASE", "CREDIT_REFUND", "PURCHASE_REVERSAL",
            "CREDIT_EXPIRY"} <= kinds


async def test_a_charge_names_the_batches_that_paid_for_it(http, customer):
    entries = (await explanation(http, customer.user, limit=100))["entries"]
    charge = next(e for e in entries if e["id"] == customer.charge_tx)
    taken = charge["allocations"]
    assert sum(a["credits"] for a in taken) == -12
    assert [(a["batchSource"], a["credits"]) for a in taken] == [("MEMBERSHIP", -10), ("PURCHASED", -2)], (
        "the membership's batch expires first, the purchase's pays the rest")
    assert all(a["batchUserId"] == customer.user and a["batchExpiresAt"] for a in taken)
    assert taken[1]["purchaseId"] == customer.purchase_id
    refund = next(e for e in entries if e["type"] == "CREDIT_REFUND")
    assert refund["relatedTransactionId"] == customer.charge_tx
    assert sum(a["credits"] for a in refund["allocations"]) == 5
    assert {a["debitTransactionId"] for a in refund["allocations"]} == {customer.charge_tx}
    # A partial capture is written with its release: each shows its own balance after.
    capture = next(e for e in entries if e["id"] == customer.capture_tx)
    release = entries[entries.index(capture) - 1]
    assert release["type"] == "CREDIT_RELEASE" and release["holdId"] == capture["holdId"]
    assert capture["heldAfter"] == release["heldAfter"] + 2


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
async def test_pages_of_the_explanation_join_into_the_whole(http, customer, limit):
    whole = (await explanation(http, customer.user, limit=100))["entries"]
    paged = await all_entries(http, customer.user, limit)
    assert [(e["id"], e["balanceAfter"], e["heldAfter"]) for e in paged] == [
        (e["id"], e["balanceAfter"], e["heldAfter"]) for e in whole]


async def test_a_cursor_that_is_not_one_is_pay007(http, customer):
    response = await http.get(f"/payment/admin/customers/{customer.user}/explanation",
                              params={"cursor": "not-a-cursor"}, headers=ADMIN)
    assert response.status_code == 422 and response.json()["code"] == "PAY007"


# --- a batch's story ------------------------------------------------------------------


async def test_every_batch_is_explained_by_its_movements(http, customer):
    entries = (await explanation(http, customer.user, limit=100))["entries"]
    batch_ids = {a["batchId"] for e in entries for a in e["allocations"]}
    assert customer.short_batch in batch_ids
    stories = {}
    for batch_id in batch_ids:
        response = await http.get(f"/payment/admin/batches/{batch_id}", headers=ADMIN)
        assert response.status_code == 200, response.text
        story = response.json()
        batch = story["batch"]
        assert batch["amount"] - batch["remaining"] == -sum(m["credits"] for m in story["movements"])
        stories[batch_id] = story
    expired = stories[customer.short_batch]
    assert (expired["batch"]["status"], expired["batch"]["remaining"]) == ("expired", 0)
    assert [(m["transactionType"], m["credits"]) for m in expired["movements"]] == [("CREDIT_EXPIRY", -4)]
    [bought] = [s for s in stories.values() if s["batch"]["transactionType"] == "CREDIT_PURCHASE"]
    assert bought["batch"]["purchaseId"] == customer.purchase_id
    moved = {m["transactionType"] for m in bought["movements"]}
    assert {"CREDIT_USAGE", "CREDIT_HOLD", "CREDIT_RELEASE", "CREDIT_REFUND"} <= moved
    assert "PURCHASE_REVERSAL" in moved, "the money refund took its share back from here"


# --- access -----------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES)
async def test_only_admins_read_the_console(http, route):
    url = route.format(user="u-anyone", batch=uuid.uuid4())
    anonymous = await http.get(url)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "PAY009"
    for caller in (auth("u-anyone"), auth("bookings", "service")):
        refused = await http.get(url, headers=caller)
        assert refused.status_code == 403 and refused.json()["code"] == "PAY010", url


async def test_the_routes_are_documented_with_their_errors(http):
    document = (await http.get("/payment/openapi.json")).json()
    expected = {
        "/payment/admin/customers/search": ("searchCustomers", {"401", "403", "422"}),
        "/payment/admin/customers/{user_id}": ("getCustomer", {"401", "403", "404", "422"}),
        "/payment/admin/customers/{user_id}/explanation": ("explainBalance",
                                                           {"401", "403", "404", "422"}),
        "/payment/admin/batches/{batch_id}": ("getBatch", {"401", "403", "404", "422"}),
    }
    for path, (operation, errors) in expected.items():
        route = document["paths"][path]["get"]
        assert route["operationId"] == operation
        assert errors <= set(route["responses"]), path
        assert route["security"] == [{"bearerAuth": []}]
        assert "ErrorBody" in json.dumps(route["responses"]["403"])


# --- contracts and the running balance, without the stack ---------------------------------


def test_the_examples_are_valid_and_every_number_is_strict():
    checked = set()
    for model in vars(support_api).values():
        if not (isinstance(model, type) and issubclass(model, WireModel)):
            continue
        extra = model.model_config.get("json_schema_extra")
        for example in extra.get("examples", []) if isinstance(extra, dict) else []:
            model.model_validate_json(json.dumps(example))
            checked.add(model.__name__)
    assert {"CustomerSearchRead", "CustomerRead", "ExplanationPage", "BatchStoryRead"} <= checked
    with pytest.raises(ValueError, match="int"):
        support_api.CustomerBalanceRead.model_validate({"available": "1", "held": 0, "total": 1})


def test_a_write_of_two_transactions_shows_each_its_own_balance():
    # Newest first: a release of 2 (available +2, held -2) written with the capture of 4
    # (held -4) before it, both storing the balance after the release; then a hold of 6.
    steps = [Step((12, 0), (2, -2)), Step((12, 0), (0, -4)), Step((10, 6), (-6, 6))]
    assert balances_after(steps, (12, 0)) == [(12, 0), (10, 2), (10, 6)]
    # The same, read from a later page whose first entry is the capture.
    assert balances_after(steps, None, skip=1) == [(10, 2), (10, 6)]
    # A transaction with no posting on the account takes the balance of the newer one.
    assert balances_after([Step(None, (0, 0)), Step((5, 0), (5, 0))], (5, 0)) == [(5, 0), (5, 0)]


async def test_the_ledger_still_reconciles(engine, customer):
    assert await reconcile(engine) == []
