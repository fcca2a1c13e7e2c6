"""The support console in a real browser: Debian's chromium, headless, driven over the
DevTools protocol against a development-mode ingress (as `make run` starts it) and the
real worker, relay, Postgres, Redis, broker and Stripe emulator.

A person signs in with the development sign-in, finds a customer by each key the issue
names, reads where the credits went (the running balance must end at the API's
balance), grants credits and refunds part of a purchase through the forms, finds both
in the history and the audit trail, double-clicks a form (one effect), and the pages
are saved as screenshots. A user's token is refused by every route the page reads.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text

from devtools.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from tests.chromium_cdp import Browser
from tests.conftest import ARTIFACTS, JWT_SECRET, Ingress, auth, fresh_auth

pytestmark = pytest.mark.timeout(240)
ADMIN = fresh_auth("console-test-admin", "admin")
READY = "document.body.dataset.ready === 'true' && document.body.dataset.view"
XSS = '<img src=x onerror="document.title=\'owned\'">'


@dataclass
class Customer:
    user: str
    email: str
    stripe_customer: str
    payment_intent: str
    purchase_id: str
    charge_tx: str


@pytest.fixture(scope="module")
async def api(dev_ingress: Ingress) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=dev_ingress.url, timeout=30) as client:
        yield client


def user_token(user: str, email: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": user, "roles": ["user"], "aud": DEFAULT_AUDIENCE, "iss": DEFAULT_ISSUER,
              "iat": now, "exp": now + 600, "email": email}
    return {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, 'HS256')}"}


async def balance_of(api: httpx.AsyncClient, user: str) -> dict[str, int]:
    reply = await api.get("/payment/credits/balance", params={"userId": user}, headers=ADMIN)
    assert reply.status_code == 200, reply.text
    return reply.json()


async def settled(api: httpx.AsyncClient, user: str, total: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        found = await balance_of(api, user)
        if found["total"] == total or time.monotonic() > deadline:
            assert found["total"] == total, found
            return found
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def customer(api: httpx.AsyncClient, engine, stripe_client, webhook_registered) -> Customer:
    """A customer as the issue's seeded data has them: a paid pack, a grant, a charge
    (its booking reference written by someone who tries markup), an open hold."""
    user, email = f"u-{uuid.uuid4().hex[:12]}", f"{uuid.uuid4().hex[:10]}@example.test"
    pack_id = f"pack_{uuid.uuid4().hex[:8]}"
    made = await api.post("/payment/credit-packs/", headers=ADMIN, json={
        "id": pack_id, "name": "Console 20", "credits": 20, "price": 2000, "currency": "usd"})
    assert made.status_code == 201, made.text
    started = await api.post(f"/payment/credit-packs/{pack_id}/purchase",
                             json={"paymentMethodId": "pm_card_visa"},
                             headers={**user_token(user, email), "Idempotency-Key": str(uuid.uuid4())})
    assert started.status_code == 200, started.text
    intent = started.json()["paymentIntentId"]
    await stripe_client.v1.payment_intents.confirm_async(intent)
    await settled(api, user, 20)
    granted = await api.post("/payment/credits/grant",
                             headers={**ADMIN, "Idempotency-Key": str(uuid.uuid4())},
                             json={"userId": user, "credits": 5, "reason": "welcome"})
    assert granted.status_code == 200, granted.text
    service = auth("bookings", "service")
    charged = await api.post("/payment/commands/", headers=service, json={
        "id": str(uuid.uuid4()), "type": "credits.charge", "userId": user,
        "payload": {"credits": 8, "reference": XSS}})
    assert charged.status_code == 200, charged.text
    held = await api.post("/payment/commands/", headers=service, json={
        "id": str(uuid.uuid4()), "type": "credits.hold", "userId": user,
        "payload": {"credits": 2, "reference": "booking-evening-yoga"}})
    assert held.status_code == 200, held.text
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT p.id, c.customer_id FROM purchases p JOIN stripe_customers c USING (user_id) "
            "WHERE p.payment_intent_id = :pi"), {"pi": intent})).one()
    return Customer(user=user, email=email, stripe_customer=row.customer_id, payment_intent=intent,
                    purchase_id=str(row.id), charge_tx=charged.json()["transactionId"])


async def sign_in(browser: Browser, ingress: Ingress, subject: str = "console-admin") -> None:
    await browser.goto(f"{ingress.url}/payment/admin/console")
    assert await browser.wait_for(READY) == "signed-out"
    await browser.evaluate(f"document.getElementById('dev-subject').value = {subject!r}")
    await browser.evaluate("document.body.dataset.ready = 'false';"
                           "document.querySelector('#dev-sign-in button').click()")
    assert await browser.wait_for(READY) == "home"


async def show(browser: Browser, hash_: str) -> str:
    """Navigate inside the page; the view it settles on."""
    await browser.evaluate(f"document.body.dataset.ready = 'false'; location.hash = {hash_!r}")
    view: str = await browser.wait_for(READY)
    return view


async def errors(browser: Browser) -> str:
    found: str = await browser.evaluate("document.getElementById('errors').textContent")
    return found


async def test_a_customer_is_found_by_each_key(dev_ingress: Ingress, customer: Customer):
    keys = {"userId": customer.user, "email": customer.email.upper(),
            "stripeCustomerId": customer.stripe_customer, "paymentIntentId": customer.payment_intent,
            "transactionId": customer.charge_tx}
    async with Browser() as browser:
        await sign_in(browser, dev_ingress)
        for kind, key in keys.items():
            await browser.evaluate(f"document.getElementById('q').value = {key!r}")
            await browser.evaluate("document.body.dataset.ready = 'false';"
                                   "document.querySelector('#search button').click()")
            await browser.wait_for(f"location.hash.startsWith('#/customer/') && {READY} === 'customer'")
            shown = await browser.evaluate(
                "document.querySelector('#balance .tile:last-child b').textContent")
            assert shown == customer.user, kind
        assert await errors(browser) == ""


async def test_the_balance_explanation_ends_at_the_apis_balance(
    dev_ingress: Ingress, api: httpx.AsyncClient, customer: Customer
):
    balance = await balance_of(api, customer.user)
    async with Browser() as browser:
        await sign_in(browser, dev_ingress)
        assert await show(browser, f"#/customer/{customer.user}/explain") == "customer"
        newest = await browser.evaluate(
            "document.querySelector('#explanation tbody tr').dataset.balanceAfter")
        assert int(newest) == balance["available"]
        # The markup in a booking reference is shown as text, never run or drawn.
        assert await browser.evaluate("document.querySelector('#view img')") is None
        assert XSS in await browser.evaluate("document.getElementById('explanation').textContent")
        assert await browser.evaluate("document.title") != "owned"
        # The charge names the batches that paid for it; one of them tells its story.
        await browser.evaluate(
            f"document.querySelector('tr[data-transaction=\"{customer.charge_tx}\"]').click()")
        batch_link = await browser.wait_for(
            f"(document.querySelector('tr[data-detail-of=\"{customer.charge_tx}\"] a') || {{}}).hash")
        await browser.screenshot(ARTIFACTS / "console-explanation.png")
        assert await show(browser, batch_link) == "batch"
        story = await browser.evaluate("document.getElementById('view').textContent")
        assert "CREDIT_USAGE" in story
        assert await errors(browser) == ""


async def audit_of(api: httpx.AsyncClient, user: str) -> list[dict[str, Any]]:
    reply = await api.get("/payment/admin/audit", params={"userId": user}, headers=ADMIN)
    assert reply.status_code == 200, reply.text
    items: list[dict[str, Any]] = reply.json()["items"]
    return items


async def submit(browser: Browser, form: str, fields: dict[str, str], clicks: int = 1) -> str:
    """Fill the action form `form`, click its button `clicks` times at once; its result."""
    selector = f"form[data-action={json.dumps(form)}]"
    for name, value in fields.items():
        await browser.evaluate(
            f"document.querySelector({json.dumps(selector)}).elements[{json.dumps(name)}].value"
            f" = {json.dumps(value)}")
    button = f"document.querySelector({json.dumps(selector + ' button[type=submit]')})"
    await browser.evaluate("document.body.dataset.ready = 'false'; delete document.body.dataset.lastResult;"
                           + "; ".join([f"{button}.click()"] * clicks))
    result: str = await browser.wait_for(
        "document.body.dataset.ready === 'true' && document.body.dataset.lastResult")
    return result.removeprefix(f"{form}: ")


async def test_a_grant_and_a_purchase_refund_from_the_forms_reach_the_history_and_the_audit(
    dev_ingress: Ingress, api: httpx.AsyncClient, customer: Customer
):
    before = await balance_of(api, customer.user)
    subject = f"console-admin-{uuid.uuid4().hex[:6]}"
    async with Browser() as browser:
        await sign_in(browser, dev_ingress, subject)
        assert await show(browser, f"#/customer/{customer.user}") == "customer"
        await browser.screenshot(ARTIFACTS / "console-customer.png")
        assert await submit(browser, "grant", {"credits": "6", "reason": "late class, sorry"}) == "done"
        refunded = await submit(browser, "refund-purchase", {
            "purchaseId": customer.purchase_id, "amount": "500", "reason": "partial refund asked by phone"})
        assert refunded == "done: 5.00 USD refunded in Stripe", refunded
        assert await show(browser, f"#/customer/{customer.user}/explain") == "customer"
        history = await browser.evaluate("document.getElementById('explanation').textContent")
        newest = await browser.evaluate(
            "document.querySelector('#explanation tbody tr').dataset.balanceAfter")
        assert await show(browser, f"#/audit/{customer.user}") == "audit"
        audit_text = await browser.evaluate("document.getElementById('view').textContent")
        assert await errors(browser) == ""

    # The grant (a PROMOTIONAL batch) and the money refund's take-back are in the history...
    assert "PROMO_BONUS" in history or "ADJUSTMENT" in history
    assert "PURCHASE_REVERSAL" in history
    after = await balance_of(api, customer.user)
    # 6 granted; 500 of 2000 cents refunded takes back a quarter of the 20 purchased.
    assert after["available"] == before["available"] + 6 - 5
    assert int(newest) == after["available"]
    # ...and in the audit, with who and why.
    actions = {item["action"]: item for item in await audit_of(api, customer.user)
               if item["admin"] == subject}
    assert set(actions) == {"grant", "refund_purchase"}
    assert actions["grant"]["reason"] == "late class, sorry" and actions["grant"]["status"] == "applied"
    assert actions["refund_purchase"]["request"]["amount"] == 500
    assert "late class, sorry" in audit_text and "partial refund asked by phone" in audit_text


async def test_a_double_click_on_a_form_is_one_action(
    dev_ingress: Ingress, api: httpx.AsyncClient, customer: Customer
):
    before = await balance_of(api, customer.user)
    subject = f"console-admin-{uuid.uuid4().hex[:6]}"
    async with Browser() as browser:
        await sign_in(browser, dev_ingress, subject)
        assert await show(browser, f"#/customer/{customer.user}") == "customer"
        result = await submit(browser, "grant", {"credits": "3", "reason": "double click"}, clicks=2)
        assert result == "done", result

    await asyncio.sleep(1.0)  # time for a second grant, were there one
    assert (await balance_of(api, customer.user))["available"] == before["available"] + 3
    mine = [item for item in await audit_of(api, customer.user) if item["admin"] == subject]
    assert len(mine) == 1


async def test_the_console_refuses_a_users_token_and_shows_nothing_signed_out(
    dev_ingress: Ingress, api: httpx.AsyncClient, customer: Customer
):
    mine = auth(customer.user)
    for path in (f"/payment/admin/customers/search?q={customer.user}",
                 f"/payment/admin/customers/{customer.user}",
                 f"/payment/admin/customers/{customer.user}/explanation",
                 "/payment/admin/audit"):
        assert (await api.get(path, headers=mine)).status_code == 403, path
    refused = await api.post(f"/payment/admin/customers/{customer.user}/grant",
                             headers={**mine, "Idempotency-Key": str(uuid.uuid4())},
                             json={"credits": 100, "reason": "for me"})
    assert refused.status_code == 403
    async with Browser() as browser:
        await browser.goto(f"{dev_ingress.url}/payment/admin/console#/customer/{customer.user}")
        assert await browser.wait_for(READY) == "signed-out"
        assert await browser.evaluate("document.getElementById('view').textContent") == ""


async def test_the_console_is_served_with_its_policy_and_no_outside_url(api: httpx.AsyncClient):
    page = await api.get("/payment/admin/console/")
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for name in ("console.js", "console.css"):
        asset = await api.get(f"/payment/admin/console/static/{name}")
        assert asset.status_code == 200 and "http://" not in asset.text and "https://" not in asset.text
    assert "https://" not in page.text and "http://" not in page.text
    assert (await api.get("/payment/admin/console/static/..%2Fdashboard%2Findex.html")).status_code == 404


async def test_a_hold_released_from_the_console_gives_its_credits_back(
    dev_ingress: Ingress, api: httpx.AsyncClient, customer: Customer
):
    held = await api.post("/payment/commands/", headers=auth("bookings", "service"), json={
        "id": str(uuid.uuid4()), "type": "credits.hold", "userId": customer.user,
        "payload": {"credits": 1, "reference": f"booking-{uuid.uuid4().hex[:6]}"}})
    assert held.status_code == 200, held.text
    hold_id = held.json()["holdId"]
    before = await balance_of(api, customer.user)
    async with Browser() as browser:
        await sign_in(browser, dev_ingress)
        assert await show(browser, f"#/customer/{customer.user}") == "customer"
        result = await submit(browser, f"release-hold-{hold_id}", {"reason": "studio closed"})
        assert result == "done", result
        still_there = await browser.evaluate(
            f"document.querySelector('form[data-action=\"release-hold-{hold_id}\"]') !== null")
    after = await balance_of(api, customer.user)
    assert (after["available"], after["held"]) == (before["available"] + 1, before["held"] - 1)
    assert not still_there, "the released hold is no longer listed"
