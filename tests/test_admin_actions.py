"""The support console's admin actions and audit trail, on the real stack.

Each action is a command through the ingress, the broker and the ledger worker; the
audit row is read back through the API and, where the rule is about the table itself,
from Postgres. Purchases are real PaymentIntents in localstripe; receipts reach a real
SMTP server through the notify worker (the fixtures of tests/test_notifications.py).
"""

import asyncio
import csv
import io
import time
import uuid
from typing import Any

import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from devtools.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from services.ledger.invariant_queries import reconcile
from tests.conftest import JWT_SECRET, auth, fresh_auth, wait_processed
from tests.test_fraud import charge_event, flags_of, paid
from tests.test_notifications import address, notify, smtp  # noqa: F401 (fixtures)
from tests.test_purchases import purchase, wait_balance

# As an identity provider writes subjects (Auth0's `provider|id`): not a user id's alphabet.
ADMIN_NAME = "auth0|support-lead"
ADMIN = fresh_auth(ADMIN_NAME, "admin")


def keyed(key: str | None = None, headers: dict[str, str] | None = None) -> dict[str, str]:
    return {**(headers or ADMIN), "Idempotency-Key": key or str(uuid.uuid4())}


async def act(http, user: str, action: str, body: dict[str, Any], key: str | None = None,
              headers: dict[str, str] | None = None):
    return await http.post(f"/payment/admin/customers/{user}/{action}", json=body,
                           headers=keyed(key, headers))


async def audit_of(http, user: str, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/payment/admin/audit", params={"userId": user, **params},
                              headers=ADMIN)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def audit_settled(http, user: str, count: int = 1, timeout: float = 20) -> list[dict]:
    """The user's audit rows once `count` of them are no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await audit_of(http, user)
        if sum(r["status"] != "pending" for r in rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def recorded_rows(engine, user: str) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(
            text("SELECT count(*) FROM admin_actions WHERE user_id = :u"), {"u": user}
        ) or 0)


async def balance_of(http, user: str) -> dict[str, Any]:
    balance: dict[str, Any] = (
        await http.get("/payment/credits/balance", headers=auth(user))
    ).json()
    return balance


def token_with_email(subject: str, email_address: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": subject, "roles": ["user"], "email": email_address, "aud": DEFAULT_AUDIENCE,
              "iss": DEFAULT_ISSUER, "iat": now, "exp": now + 600}
    return {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, 'HS256')}"}


async def test_a_goodwill_grant_is_applied_and_audited_with_admin_reason_and_effect(
    http, engine, user_id
):
    granted = await act(http, user_id, "grant", {"credits": 25, "reason": "booking #812 lost"})
    assert granted.status_code == 200, granted.text
    body = granted.json()
    assert body["credits"] == 25 and body["balance"]["available"] == 25
    assert (await balance_of(http, user_id))["available"] == 25
    (row,) = await audit_settled(http, user_id)
    assert (row["admin"], row["action"], row["userId"], row["reason"]) == (
        ADMIN_NAME, "grant", user_id, "booking #812 lost"
    )
    assert (row["commandId"], row["commandType"], row["status"], row["errorCode"]) == (
        body["commandId"], "credits.grant", "applied", None
    )
    assert row["effect"] == {"transactionId": body["transactionId"], "type": "ADJUSTMENT",
                             "credits": 25, "amount": None, "currency": None}
    assert row["request"] == {"userId": user_id, "credits": 25, "reason": "booking #812 lost"}
    async with engine.connect() as conn:
        evidence = (await conn.execute(
            text("SELECT kind, subject FROM command_evidence WHERE command_id = :c"),
            {"c": body["commandId"]},
        )).one()
    assert tuple(evidence) == ("admin_request", ADMIN_NAME), "recorded with its evidence"


@pytest.mark.parametrize("body", [
    {"credits": 25},
    {"credits": 25, "reason": ""},
    {"credits": 25, "reason": " \n\t"},
    {"credits": 25, "reason": "x" * 501},
    {"credits": 25, "reason": None},
    {"credits": 25, "reason": "goodwill\x00"},  # Postgres text holds no NUL: a 500 before
    {"credits": 25, "reason": "\x1b[31mgoodwill"},  # a terminal escape for whoever reads logs
])
async def test_an_action_without_a_reason_is_refused_and_nothing_is_recorded(
    http, engine, user_id, body
):
    refused = await act(http, user_id, "grant", body)
    assert refused.status_code == 422 and refused.json()["code"] == "PAY007", refused.text
    assert await recorded_rows(engine, user_id) == 0
    assert await audit_of(http, user_id) == []
    assert (await balance_of(http, user_id))["total"] == 0


async def test_an_action_without_an_idempotency_key_is_refused(http, engine, user_id):
    for headers in (ADMIN, {**ADMIN, "Idempotency-Key": ""}):
        refused = await http.post(f"/payment/admin/customers/{user_id}/grant",
                                  json={"credits": 5, "reason": "no key"}, headers=headers)
        assert refused.status_code == 422 and refused.json()["code"] == "PAY007", refused.text
    assert await recorded_rows(engine, user_id) == 0
    assert (await balance_of(http, user_id))["total"] == 0


async def test_the_same_key_twice_is_one_effect_and_one_audit_row(http, engine, user_id):
    key = str(uuid.uuid4())
    body = {"credits": 10, "reason": "double click"}
    first = await act(http, user_id, "grant", body, key)
    second = await act(http, user_id, "grant", body, key)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json() and second.headers["Idempotent-Replayed"] == "true"

    clicks = str(uuid.uuid4())
    together = await asyncio.gather(
        *(act(http, user_id, "grant", {"credits": 7, "reason": "five clicks"}, clicks)
          for _ in range(5))
    )
    statuses = sorted(r.status_code for r in together)
    assert set(statuses) <= {200, 409} and 200 in statuses, [r.text for r in together]
    assert all(r.json()["code"] == "PAY013" for r in together if r.status_code == 409)
    assert len({r.json()["commandId"] for r in together if r.status_code == 200}) == 1
    assert (await balance_of(http, user_id))["available"] == 17
    assert await recorded_rows(engine, user_id) == 2
    rows = await audit_settled(http, user_id, count=2)
    assert sorted(r["effect"]["credits"] for r in rows) == [7, 10]
    other = await act(http, user_id, "grant", {"credits": 11, "reason": "double click"}, key)
    assert other.status_code == 422 and other.json()["code"] == "PAY012", "same key, other body"
    assert await recorded_rows(engine, user_id) == 2


@pytest.mark.parametrize("roles", [("user",), ("service",)])
async def test_a_user_or_service_token_is_refused_and_nothing_is_recorded(
    http, engine, user_id, roles
):
    caller = auth(f"caller-{uuid.uuid4().hex[:6]}", *roles)
    for action, body in (
        ("grant", {"credits": 5, "reason": "not an admin"}),
        ("release-hold", {"holdId": str(uuid.uuid4()), "reason": "not an admin"}),
        ("resend-receipt", {"purchaseId": str(uuid.uuid4()), "reason": "not an admin"}),
    ):
        refused = await act(http, user_id, action, body, headers=caller)
        assert refused.status_code == 403 and refused.json()["code"] == "PAY010", refused.text
    for path in ("/payment/admin/audit", "/payment/admin/audit.csv"):
        assert (await http.get(path, headers=caller)).status_code == 403
    assert await recorded_rows(engine, user_id) == 0
    assert (await balance_of(http, user_id))["total"] == 0


async def test_releasing_a_hold_returns_its_credits_and_is_audited(http, engine, user_id):
    assert (await act(http, user_id, "grant", {"credits": 30, "reason": "setup"})).status_code == 200
    hold = await http.post("/payment/commands/", headers=auth("booking", "service"), json={
        "id": str(uuid.uuid4()), "type": "credits.hold", "userId": user_id,
        "payload": {"credits": 12, "reference": f"booking-{uuid.uuid4().hex[:6]}"},
    })
    assert hold.status_code == 200, hold.text
    hold_id = hold.json()["holdId"]
    assert (await balance_of(http, user_id))["held"] == 12
    released = await act(http, user_id, "release-hold", {"holdId": hold_id,
                                                         "reason": "booking vanished"})
    assert released.status_code == 200, released.text
    assert released.json()["credits"] == 12
    balance = await balance_of(http, user_id)
    assert (balance["available"], balance["held"]) == (30, 0)
    again = await act(http, user_id, "release-hold", {"holdId": str(uuid.uuid4()),
                                                      "reason": "wrong hold"})
    assert again.status_code == 404 and again.json()["code"] == "PAY008"
    rows = await audit_settled(http, user_id, count=3)
    release = next(r for r in rows if r["commandId"] == released.json()["commandId"])
    assert (release["action"], release["reason"], release["status"]) == (
        "release_hold", "booking vanished", "applied"
    )
    assert release["effect"]["type"] == "CREDIT_RELEASE" and release["effect"]["credits"] == 12
    wrong = next(r for r in rows if r["reason"] == "wrong hold")  # rejected by the worker
    assert (wrong["status"], wrong["errorCode"], wrong["effect"]) == ("rejected", "PAY008", None)


async def test_resolving_a_fraud_flag_takes_back_its_freeze_and_is_audited(http, engine, pack):
    fingerprint = f"fp_{uuid.uuid4().hex[:12]}"
    users = [f"u-support-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for user in users:
        intent = await paid(http, pack, user)
        await wait_balance(http, user, 23)
        assert (await post_charge(http, intent, fingerprint)).status_code == 200
    (flag,) = await flags_of(http, users[2])
    someone_else = await act(http, users[0], "resolve-fraud-flag", {
        "flagId": flag["id"], "resolution": "confirmed", "reason": "not their flag"})
    assert someone_else.status_code == 404 and someone_else.json()["code"] == "PAY008"
    confirmed = await act(http, users[2], "resolve-fraud-flag", {
        "flagId": flag["id"], "resolution": "confirmed", "reason": "stolen card"})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["revoked"] == 20
    (row,) = await audit_settled(http, users[2])
    assert (row["action"], row["reason"], row["status"]) == ("resolve_fraud_flag", "stolen card",
                                                             "applied")
    assert row["effect"]["type"] == "ADJUSTMENT" and row["effect"]["credits"] == 20
    listed = await http.get(f"/payment/admin/fraud-flags/?userId={users[2]}", headers=ADMIN)
    (resolved,) = listed.json()["items"]
    assert (resolved["status"], resolved["resolvedBy"], resolved["resolutionNote"]) == (
        "confirmed", ADMIN_NAME, "stolen card"
    )
    assert await recorded_rows(engine, users[0]) == 0
    assert await reconcile(engine) == []


async def post_charge(http, intent: str, fingerprint: str):
    from tests.test_purchases import post_event

    return await post_event(http, charge_event(intent, fingerprint))


async def test_refunding_a_purchase_partly_then_fully_moves_the_money_in_stripe_once_each(
    http, pack, stripe_client, webhook_registered, engine, worker, user_id
):
    started = await purchase(http, pack["id"], user_id)
    intent = started["paymentIntentId"]
    await stripe_client.v1.payment_intents.confirm_async(intent)
    assert (await wait_balance(http, user_id, 23))["total"] == 23
    key = str(uuid.uuid4())
    body = {"purchaseId": started["purchaseId"], "amount": 600, "reason": "one session cancelled"}
    partial = await act(http, user_id, "refund-purchase", body, key)
    assert partial.status_code == 200, partial.text
    assert (partial.json()["amountRefunded"], partial.json()["currency"]) == (600, "usd")
    assert partial.json()["creditsRevoked"] == 23 * 600 // 1800
    replay = await act(http, user_id, "refund-purchase", body, key)
    assert replay.json() == partial.json(), "a double click refunds once"
    rest = await act(http, user_id, "refund-purchase",
                     {"purchaseId": started["purchaseId"], "reason": "customer left"})
    assert rest.status_code == 200, rest.text
    assert rest.json()["amountRefunded"] == 1200 and rest.json()["refunded"] == 1800
    refunds = await stripe_client.v1.refunds.list_async(params={"limit": 100})
    assert sorted(r.amount for r in refunds.data if r.payment_intent == intent) == [600, 1200]
    assert (await wait_balance(http, user_id, 0))["total"] == 0
    nothing_left = await act(http, user_id, "refund-purchase",
                             {"purchaseId": started["purchaseId"], "amount": 1, "reason": "more"})
    assert nothing_left.status_code == 409 and nothing_left.json()["code"] == "PAY014"
    unknown = await act(http, user_id, "refund-purchase",
                        {"purchaseId": str(uuid.uuid4()), "reason": "which one?"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "PAY008"
    rows = await audit_settled(http, user_id, count=2)
    assert len(rows) == 2, "refusals before any command are not actions"
    newest, oldest = rows
    assert (oldest["reason"], oldest["request"]["amount"]) == ("one session cancelled", 600)
    assert oldest["effect"]["type"] == "PURCHASE_REVERSAL"
    assert (oldest["effect"]["amount"], oldest["effect"]["currency"]) == (600, "usd")
    assert (newest["effect"]["amount"], newest["status"]) == (1200, "applied")
    assert await reconcile(engine) == []


async def test_resending_a_receipt_emails_it_again_as_a_new_event(
    http, pack, stripe_client, webhook_registered, engine, smtp, notify, user_id  # noqa: F811
):
    to = address("resend-")
    response = await http.post(
        f"/payment/credit-packs/{pack['id']}/purchase", json={"paymentMethodId": "pm_card_visa"},
        headers={**token_with_email(user_id, to), "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text
    started = response.json()
    await stripe_client.v1.payment_intents.confirm_async(started["paymentIntentId"])
    (first,) = await smtp.inbox.wait_for(to)
    resent = await act(http, user_id, "resend-receipt",
                       {"purchaseId": started["purchaseId"], "reason": "never arrived"})
    assert resent.status_code == 200, resent.text
    event_id = resent.json()["eventId"]
    mails = await smtp.inbox.wait_for(to, count=2)
    assert len(mails) == 2, "a second email reached the inbox"
    second = mails[1]
    assert event_id in second.message["Message-ID"]
    assert event_id not in first.message["Message-ID"], "a new event, not a redelivery"
    assert second.message["Subject"] == first.message["Subject"]
    (row,) = await audit_settled(http, user_id)
    assert (row["action"], row["status"], row["effect"], row["effects"]) == (
        "resend_receipt", "applied", None, []
    )
    await asyncio.sleep(1.0)
    assert len(smtp.inbox.to(to)) == 2


async def test_resending_the_receipt_of_an_unpaid_purchase_is_refused_with_pay014(
    http, pack, engine, user_id
):
    started = await purchase(http, pack["id"], user_id)  # never paid
    refused = await act(http, user_id, "resend-receipt",
                        {"purchaseId": started["purchaseId"], "reason": "asked for a receipt"})
    assert refused.status_code == 409 and refused.json()["code"] == "PAY014", refused.text
    unknown = await act(http, user_id, "resend-receipt",
                        {"purchaseId": str(uuid.uuid4()), "reason": "no such purchase"})
    assert unknown.status_code == 404 and unknown.json()["code"] == "PAY008", unknown.text
    rows = await audit_settled(http, user_id, count=2)
    assert sorted((r["status"], r["errorCode"]) for r in rows) == [
        ("rejected", "PAY008"), ("rejected", "PAY014")
    ]
    processed = await wait_processed(engine, [uuid.UUID(r["commandId"]) for r in rows])
    assert {p["status"] for p in processed.values()} == {"rejected"}


async def test_the_audit_pages_filters_and_exports_csv_with_formulas_neutralised(
    http, engine, user_id
):
    admin_b = f"support-{uuid.uuid4().hex[:6]}"
    reasons = ["=HYPERLINK(\"http://evil\",\"x\")", "plain goodwill", "-2+3"]
    for n, reason in enumerate(reasons):
        who = auth(admin_b, "admin") if n == 1 else ADMIN
        granted = await act(http, user_id, "grant", {"credits": n + 1, "reason": reason},
                            headers=who)
        assert granted.status_code == 200, granted.text
    first = await http.get("/payment/admin/audit", params={"userId": user_id, "limit": 2},
                           headers=ADMIN)
    page = first.json()
    assert [r["reason"] for r in page["items"]] == ["-2+3", "plain goodwill"], "newest first"
    assert page["hasMore"] is True
    rest = await http.get("/payment/admin/audit", headers=ADMIN,
                          params={"userId": user_id, "limit": 2, "cursor": page["nextCursor"]})
    assert [r["reason"] for r in rest.json()["items"]] == [reasons[0]]
    assert rest.json()["hasMore"] is False
    by_admin = await audit_of(http, user_id, admin=admin_b)
    assert [r["reason"] for r in by_admin] == ["plain goodwill"]
    future = await audit_of(http, user_id, **{"from": "2999-01-01T00:00:00Z"})
    past = await audit_of(http, user_id, to="2000-01-01T00:00:00Z")
    assert future == past == []
    bad = await http.get("/payment/admin/audit", params={"cursor": "nonsense!"}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["code"] == "PAY007"

    await audit_settled(http, user_id, count=3)
    exported = await http.get("/payment/admin/audit.csv", params={"userId": user_id},
                              headers=ADMIN)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["reason"] for r in rows] == ["'-2+3", "plain goodwill", "'" + reasons[0]]
    assert {r["status"] for r in rows} == {"applied"}
    assert [r["credits"] for r in rows] == ["3", "2", "1"]
    assert rows[1]["admin"] == admin_b and rows[0]["transactionType"] == "ADJUSTMENT"
    empty = await http.get("/payment/admin/audit.csv", params={"userId": f"u-{uuid.uuid4().hex}"},
                           headers=ADMIN)
    assert empty.text.startswith("at,admin,action,userId,reason,commandId")


async def test_the_admin_actions_table_refuses_update_delete_and_truncate(http, engine, user_id):
    granted = await act(http, user_id, "grant", {"credits": 3, "reason": "original reason"})
    assert granted.status_code == 200, granted.text
    for statement in (
        "UPDATE admin_actions SET reason = 'rewritten' WHERE user_id = :u",
        "DELETE FROM admin_actions WHERE user_id = :u",
        "TRUNCATE admin_actions",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement), {"u": user_id})
    (row,) = await audit_of(http, user_id)
    assert row["reason"] == "original reason"
    for reason in ("", "   ", "x" * 501):  # the table holds the rule too, not just the API
        with pytest.raises(DBAPIError, match="check"):
            async with engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO admin_actions (id, admin_subject, action, user_id, reason, "
                    "command_id, command_type, idempotency_key, request) VALUES (:id, 'a', "
                    "'grant', :u, :reason, :id, 'credits.grant', 'k', '{}')"
                ), {"id": uuid.uuid4(), "u": user_id, "reason": reason})
    assert len(await audit_of(http, user_id)) == 1
