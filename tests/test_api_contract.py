"""The HTTP contract a client is generated from: Idempotency-Key on every POST, the 202
pending reply, `hasMore` on paged lists and the public config, against the real ingress."""

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import auth, fresh_auth
from tests.test_http_api import grant_http

ADMIN = fresh_auth("contract-admin", "admin")
# POSTs with their own idempotency (the Stripe webhook dedupes by Stripe's event id), and
# the console's development sign-in and sign-out, which change only the caller's own
# session cookie: a replayed reply would carry no cookie, and doing either twice is harmless.
NOT_KEYED = {"stripeWebhook", "devAdminSignIn", "adminSignOut"}
# The support console's actions (ingress/controllers/admin_actions.py) require the key:
# one key per form, so a double click is one action.
KEY_REQUIRED = {"supportGrant", "supportRefundPurchase", "supportReleaseHold",
                "supportResolveFraudFlag", "supportResendReceipt"}
COMMAND_PUBLISHERS = {"grantCredits", "refundCredits", "transferCredits", "publishCommand",
                      "resolveFraudFlag", *KEY_REQUIRED}


def _pack(suffix: str, currency: str = "usd", price: int = 1000) -> dict[str, Any]:
    return {"id": f"pack_{suffix}", "name": "Idempotent pack", "credits": 10, "price": price,
            "currency": currency}


def _plan(suffix: str, price: int = 900) -> dict[str, Any]:
    return {"id": f"plan_{suffix}", "name": "Idempotent plan", "price": price,
            "creditsPerPeriod": 5}


def _code(suffix: str, percent: int = 10) -> dict[str, Any]:
    return {"code": f"IDEM{suffix.upper()}", "kind": "percentage", "percentOff": percent}


# route, body maker (suffix, variant), the SQL counting what one body created
CREATES = {
    "createCreditPack": ("/payment/credit-packs/", lambda s, v: _pack(s, price=1000 + v),
                         "SELECT count(*) FROM credit_packs WHERE id = :name",
                         lambda s: f"pack_{s}"),
    "createMembershipPlan": ("/payment/memberships/plans", lambda s, v: _plan(s, price=900 + v),
                             "SELECT count(*) FROM membership_plans WHERE id = :name",
                             lambda s: f"plan_{s}"),
    "createPromoCode": ("/payment/promo-codes/", lambda s, v: _code(s, percent=10 + v),
                        "SELECT count(*) FROM promo_codes WHERE code = :name",
                        lambda s: f"IDEM{s.upper()}"),
}


async def _count(engine, sql: str, name: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql), {"name": name})).scalar_one())


@pytest.mark.parametrize("operation", sorted(CREATES))
async def test_a_create_replayed_with_its_key_answers_the_same_and_creates_once(
    http, engine, operation
):
    path, body, count_sql, name = CREATES[operation]
    suffix = uuid.uuid4().hex[:8]
    headers = {**ADMIN, "Idempotency-Key": str(uuid.uuid4())}
    first = await http.post(path, json=body(suffix, 0), headers=headers)
    again = await http.post(path, json=body(suffix, 0), headers=headers)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert await _count(engine, count_sql, name(suffix)) == 1
    other = await http.post(path, json=body(suffix, 1), headers=headers)
    assert (other.status_code, other.json()["code"]) == (422, "PAY012")
    unkeyed = await http.post(path, json=body(suffix, 0), headers=ADMIN)
    assert unkeyed.status_code == 409, "without a key a second create is a conflict, not a replay"
    assert await _count(engine, count_sql, name(suffix)) == 1


async def test_concurrent_creates_with_one_key_make_one_pack_and_the_rest_wait_409(http, engine):
    suffix = uuid.uuid4().hex[:8]
    headers = {**ADMIN, "Idempotency-Key": str(uuid.uuid4())}
    replies = await asyncio.gather(*(
        http.post("/payment/credit-packs/", json=_pack(suffix), headers=headers) for _ in range(5)
    ))
    statuses = sorted(r.status_code for r in replies)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, statuses
    assert all(r.json()["code"] == "PAY013" for r in replies if r.status_code == 409)
    assert await _count(engine, "SELECT count(*) FROM credit_packs WHERE id = :name",
                        f"pack_{suffix}") == 1


async def test_product_sync_replayed_with_its_key_answers_the_same(http):
    headers = {**ADMIN, "Idempotency-Key": str(uuid.uuid4())}
    first = await http.post("/payment/products/sync", headers=headers)
    again = await http.post("/payment/products/sync", headers=headers)
    assert first.status_code == again.status_code == 200, first.text
    assert isinstance(first.json(), list) and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert first.headers.get("idempotent-replayed") is None


async def test_promo_validate_replayed_with_its_key_answers_the_same_and_reserves_nothing(
    http, engine, pack, user_id
):
    code = _code(uuid.uuid4().hex[:8])
    assert (await http.post("/payment/promo-codes/", json=code, headers=ADMIN)).status_code == 201
    headers = {**auth(user_id), "Idempotency-Key": str(uuid.uuid4())}
    target = {"code": code["code"], "packId": pack["id"]}
    first = await http.post("/payment/promo-codes/validate", json=target, headers=headers)
    again = await http.post("/payment/promo-codes/validate", json=target, headers=headers)
    assert first.status_code == again.status_code == 200, first.text
    assert again.json() == first.json() and first.json()["discount"] > 0
    assert again.headers.get("idempotent-replayed") == "true"
    other = await http.post("/payment/promo-codes/validate",
                            json={**target, "code": "SOMETHINGELSE"}, headers=headers)
    assert (other.status_code, other.json()["code"]) == (422, "PAY012")
    async with engine.connect() as conn:
        reserved = (await conn.execute(
            text("SELECT count(*) FROM promo_reservations WHERE user_id = :u"), {"u": user_id}
        )).scalar_one()
    assert reserved == 0


async def test_the_document_declares_the_key_on_every_post_and_the_202_where_commands_wait(http):
    document = (await http.get("/payment/openapi.json")).json()
    posts = {op["operationId"]: op for ops in document["paths"].values()
             for method, op in ops.items() if method == "post"}
    assert set(posts) >= COMMAND_PUBLISHERS
    for operation_id, operation in posts.items():
        keyed = [p for p in operation.get("parameters", [])
                 if p["in"] == "header" and p["name"] == "Idempotency-Key"]
        if operation_id in NOT_KEYED:
            assert not keyed, operation_id
            continue
        assert len(keyed) == 1, operation_id
        assert keyed[0]["required"] is (operation_id in KEY_REQUIRED), operation_id
        accepted = operation["responses"].get("202")
        if operation_id in COMMAND_PUBLISHERS:
            assert accepted is not None, operation_id
            assert accepted["headers"]["Location"]["required"] is True
            ref = accepted["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/CommandPendingRead")
        else:
            assert accepted is None, f"{operation_id} never answers 202"
    pending = document["components"]["schemas"]["CommandPendingRead"]
    assert pending["examples"][0]["status"] == "pending"
    assert set(pending["required"]) == {"commandId", "status", "statusUrl"}


# --- hasMore ------------------------------------------------------------------------------


async def _history(http, user: str, **params) -> dict:
    response = await http.get("/payment/credits/history", params=params, headers=auth(user))
    assert response.status_code == 200, response.text
    return response.json()


async def test_history_has_more_only_when_a_further_page_exists(http, user_id):
    for credits in (1, 2, 3):
        assert (await grant_http(http, user_id, credits)).status_code == 200
    exact = await _history(http, user_id, limit=3)
    assert len(exact["items"]) == 3 and exact["hasMore"] is False and exact["nextCursor"] is None
    first = await _history(http, user_id, limit=2)
    assert len(first["items"]) == 2 and first["hasMore"] is True and first["nextCursor"]
    last = await _history(http, user_id, limit=2, cursor=first["nextCursor"])
    assert [i["credits"] for i in last["items"]] == [1]
    assert last["hasMore"] is False and last["nextCursor"] is None
    empty = await _history(http, f"{user_id}-none", limit=1)
    assert empty == {"items": [], "nextCursor": None, "hasMore": False}


async def _flags(http, **params) -> dict:
    response = await http.get("/payment/admin/fraud-flags/", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def test_fraud_flags_page_with_has_more_and_a_cursor_through_equal_times(
    http, engine, user_id
):
    """Five flags, two pairs created at the same instant: pages of two see each once."""
    times = [datetime(2026, 1, day, tzinfo=UTC) for day in (1, 2, 2, 3, 3)]
    async with engine.begin() as conn:
        for n, created in enumerate(times):
            await conn.execute(text(
                "INSERT INTO fraud_flags (id, user_id, rule, subject, severity, command_id, "
                "created_at) VALUES (:id, :u, 'contract_test', :s, 'low', :c, :t)"
            ), {"id": uuid.uuid4(), "u": user_id, "s": f"s{n}", "c": uuid.uuid4(), "t": created})
    exact = await _flags(http, userId=user_id, limit=5)
    assert len(exact["items"]) == 5 and exact["hasMore"] is False and exact["nextCursor"] is None
    seen: list[dict] = []
    pages, cursor = [], None
    while True:
        page = await _flags(http, userId=user_id, limit=2, **({"cursor": cursor} if cursor else {}))
        seen += page["items"]
        pages.append(page["hasMore"])
        cursor = page["nextCursor"]
        assert page["hasMore"] is (cursor is not None)
        if not cursor:
            break
    assert pages == [True, True, False]
    assert [f["id"] for f in seen] == [f["id"] for f in exact["items"]], "same order, no repeats"
    bad = await http.get("/payment/admin/fraud-flags/", params={"cursor": "%%%"}, headers=ADMIN)
    assert (bad.status_code, bad.json()["code"]) == (422, "PAY007")


# --- public config ---------------------------------------------------------------------------


async def test_public_config_names_the_key_the_currencies_and_the_credit_price(
    http, settings, pack
):
    euro = _pack(uuid.uuid4().hex[:8], currency="eur")
    assert (await http.post("/payment/credit-packs/", json=euro, headers=ADMIN)).status_code == 201
    response = await http.get("/payment/config")  # no token: a page calls it before sign-in
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["stripePublishableKey"] == settings.stripe_publishable_key
    assert {"usd", "eur"} <= set(body["currencies"]) and body["currencies"] == sorted(body["currencies"])
    assert body["creditPrice"] == {"amount": settings.default_credit_price,
                                   "currency": settings.default_currency}
    assert "max-age=60" in response.headers["cache-control"]
    assert "public" in response.headers["cache-control"]
    assert json.dumps(body).count("sk_") == 0, "never the secret key"
