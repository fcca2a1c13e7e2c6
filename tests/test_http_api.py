"""The HTTP API of the running ingress process, against the real worker and relay."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from devtools.tokens import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from tests.conftest import JWT_SECRET, auth, start_ingress


async def grant_http(http, user: str, credits: int, key: str | None = None, **extra):
    headers = auth("ops-admin", "admin")
    if key:
        headers["Idempotency-Key"] = key
    body = {"userId": user, "credits": credits, "reason": "goodwill", **extra}
    return await http.post("/payment/credits/grant", json=body, headers=headers)


async def charge_http(http, user: str, credits: int, reference: str = "booking-1"):
    command = {
        "id": str(uuid.uuid4()),
        "type": "credits.charge",
        "schemaVersion": 1,
        "occurredAt": datetime.now(UTC).isoformat(),
        "userId": user,
        "correlationId": str(uuid.uuid4()),
        "source": "booking-service",
        "payload": {"credits": credits, "reference": reference},
    }
    return await http.post(
        "/payment/commands/", json=command, headers=auth("booking-service", "service")
    )


# --- authentication and roles -------------------------------------------------------


def token_claims(**changes) -> dict:
    """Claims a valid token carries, with `changes` applied (None drops the claim), so
    each bad token below is wrong in exactly the way its id says."""
    now = int(time.time())
    claims = {"sub": "u", "aud": DEFAULT_AUDIENCE, "iss": DEFAULT_ISSUER, "iat": now,
              "exp": now + 3600} | changes
    return {key: value for key, value in claims.items() if value is not None}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer " + jwt.encode(token_claims(), "wrong-secret-" + "x" * 32, "HS256"),
        "Bearer " + jwt.encode(token_claims(iat=0, exp=1), JWT_SECRET, "HS256"),
        "Bearer " + jwt.encode(token_claims(sub=None), JWT_SECRET, "HS256"),
        "Bearer " + jwt.encode(token_claims(exp=None), JWT_SECRET, "HS256"),
        "Bearer " + jwt.encode(token_claims(), None, "none"),
    ],
    ids=["missing", "garbage", "basic", "wrong-secret", "expired", "no-sub", "no-exp", "alg-none"],
)
async def test_bad_tokens_get_401_pay009(http, header):
    headers = {"Authorization": header} if header else {}
    response = await http.get("/payment/credits/balance", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "PAY009"


async def test_user_cannot_use_privileged_routes(http, user_id):
    headers = auth(user_id)
    grant = await http.post(
        "/payment/credits/grant",
        json={"userId": user_id, "credits": 5, "reason": "free money"},
        headers=headers,
    )
    assert grant.status_code == 403 and grant.json()["code"] == "PAY010"
    transfer = await http.post(
        "/payment/credits/transfer",
        json={"fromUserId": user_id, "toUserId": "someone", "credits": 1, "reason": "gift"},
        headers=headers,
    )
    assert transfer.status_code == 403
    service_grant = await http.post(
        "/payment/credits/grant",
        json={"userId": user_id, "credits": 5, "reason": "free money"},
        headers=auth("svc", "service"),
    )
    assert service_grant.status_code == 403, "grants create credits: admin only"
    service_transfer = await http.post(
        "/payment/credits/transfer",
        json={"fromUserId": user_id, "toUserId": "someone", "credits": 1, "reason": "gift"},
        headers=auth("svc", "service"),
    )
    assert service_transfer.status_code == 403, "transfers are admin only"


async def test_user_sees_only_their_own_account(http, user_id):
    assert (await grant_http(http, user_id, 5)).status_code == 200
    other = f"{user_id}-other"
    mine = await http.get("/payment/credits/balance", headers=auth(user_id))
    assert mine.json()["available"] == 5
    peek = await http.get(
        "/payment/credits/balance", params={"userId": user_id}, headers=auth(other)
    )
    assert peek.status_code == 403
    history = await http.get(
        "/payment/credits/history", params={"userId": user_id}, headers=auth(other)
    )
    assert history.status_code == 403
    as_admin = await http.get(
        "/payment/credits/balance", params={"userId": user_id}, headers=auth("a", "admin")
    )
    assert as_admin.json()["available"] == 5


# --- writes: grant, charge, refund, transfer ------------------------------------------


async def test_grant_then_balance_shows_batches_in_spend_order(http, user_id):
    soon = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    first = await grant_http(http, user_id, 10)
    second = await grant_http(http, user_id, 4, expiresAt=soon)
    assert first.status_code == 200 and second.status_code == 200, second.text
    assert second.json()["balance"] == {"available": 14, "held": 0, "total": 14}
    balance = (await http.get("/payment/credits/balance", headers=auth(user_id))).json()
    assert [b["remaining"] for b in balance["batches"]] == [4, 10]
    assert [b["source"] for b in balance["batches"]] == ["PROMOTIONAL", "PROMOTIONAL"]
    assert balance["total"] == 14 and balance["held"] == 0


async def test_refund_round_trip_returns_credits_to_their_batch(http, user_id):
    await grant_http(http, user_id, 10)
    charged = await charge_http(http, user_id, 6)
    assert charged.status_code == 200, charged.text
    transaction_id = charged.json()["transactionId"]
    refund = await http.post(
        "/payment/credits/refund",
        json={"userId": user_id, "transactionId": transaction_id, "credits": 4, "reason": "late"},
        headers=auth("support", "admin"),
    )
    assert refund.status_code == 200, refund.text
    assert refund.json()["balance"]["available"] == 8
    assert refund.json()["refundableLeft"] == 2
    too_much = await http.post(
        "/payment/credits/refund",
        json={"userId": user_id, "transactionId": transaction_id, "credits": 3, "reason": "again"},
        headers=auth("support", "admin"),
    )
    assert too_much.status_code == 409 and too_much.json()["code"] == "PAY014"


async def test_transfer_round_trip_by_admin(http, user_id):
    recipient = f"{user_id}-to"
    await grant_http(http, user_id, 9)
    moved = await http.post(
        "/payment/credits/transfer",
        json={"fromUserId": user_id, "toUserId": recipient, "credits": 4, "reason": "merge"},
        headers=auth("root", "admin"),
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["balance"]["available"] == 5
    assert moved.json()["recipientBalance"]["available"] == 4
    theirs = await http.get("/payment/credits/history", headers=auth(recipient))
    [item] = theirs.json()["items"]
    assert item["type"] == "CREDIT_TRANSFER" and item["credits"] == 4


async def test_charge_without_credits_is_402_pay001(http, user_id):
    response = await charge_http(http, user_id, 3)
    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "PAY001" and body["details"] == {"available": 0, "requested": 3}


async def test_grant_over_the_balance_limit_is_pay006(http, user_id):
    for _ in range(2):  # MAX_CREDIT_BALANCE 10000 in two grants of the most per transaction
        assert (await grant_http(http, user_id, 5000)).status_code == 200
    response = await grant_http(http, user_id, 1)
    assert response.status_code == 422
    assert response.json()["code"] == "PAY006"
    assert response.json()["details"] == {"balance": 10000, "credits": 1, "limit": 10000}
    too_big = await grant_http(http, f"{user_id}-b", 5001)
    assert too_big.status_code == 422 and too_big.json()["code"] == "PAY016"


async def test_invalid_bodies_get_422_pay007_and_change_nothing(http, user_id):
    for body in (
        {"userId": user_id, "credits": -5, "reason": "x"},
        {"userId": user_id, "credits": "ten", "reason": "x"},
        {"userId": user_id, "credits": 5, "reason": "x", "surprise": True},
        {"userId": user_id, "credits": 10**30, "reason": "x"},
        {"credits": 5, "reason": "x"},
    ):
        response = await http.post(
            "/payment/credits/grant", json=body, headers=auth("a", "admin")
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == "PAY007"
    balance = await http.get("/payment/credits/balance", headers=auth(user_id))
    assert balance.json()["total"] == 0


# --- idempotency -------------------------------------------------------------------------


async def test_idempotency_key_replays_the_first_response(http, user_id):
    key = str(uuid.uuid4())
    first = await grant_http(http, user_id, 7, key=key)
    again = await grant_http(http, user_id, 7, key=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    balance = await http.get("/payment/credits/balance", headers=auth(user_id))
    assert balance.json()["available"] == 7


async def test_idempotency_key_with_another_body_is_422_pay012(http, user_id):
    key = str(uuid.uuid4())
    assert (await grant_http(http, user_id, 7, key=key)).status_code == 200
    reused = await grant_http(http, user_id, 8, key=key)
    assert reused.status_code == 422 and reused.json()["code"] == "PAY012"
    balance = await http.get("/payment/credits/balance", headers=auth(user_id))
    assert balance.json()["available"] == 7


async def test_same_key_in_flight_gets_409_pay013(http, user_id):
    key = str(uuid.uuid4())
    results = await asyncio.gather(*(grant_http(http, user_id, 3, key=key) for _ in range(5)))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) >= 1
    assert set(statuses) <= {200, 409}
    assert all(r.json()["code"] == "PAY013" for r in results if r.status_code == 409)
    balance = await http.get("/payment/credits/balance", headers=auth(user_id))
    assert balance.json()["available"] == 3, "five requests, one effect"


# --- history and pagination ----------------------------------------------------------------


async def test_history_is_newest_first_with_cursor_pagination_and_filters(http, user_id):
    for credits in (1, 2, 3, 4, 5):
        assert (await grant_http(http, user_id, credits)).status_code == 200
    charged = await charge_http(http, user_id, 2)
    assert charged.status_code == 200
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/payment/credits/history", params=params, headers=auth(user_id))).json()
        seen += page["items"]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert [i["credits"] for i in seen] == [-2, 5, 4, 3, 2, 1]
    assert [i["balanceAfter"] for i in seen] == [13, 15, 10, 6, 3, 1]
    first = seen[0]
    assert first["type"] == "CREDIT_USAGE" and first["userId"] == user_id
    assert {"id", "amount", "status", "stripePaymentIntentId", "metadata", "createdAt"} <= set(first)
    usage = await http.get(
        "/payment/credits/history", params={"type": "CREDIT_USAGE"}, headers=auth(user_id)
    )
    assert [i["type"] for i in usage.json()["items"]] == ["CREDIT_USAGE"]
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    empty = await http.get(
        "/payment/credits/history", params={"from": future}, headers=auth(user_id)
    )
    assert empty.json()["items"] == []
    bad = await http.get(
        "/payment/credits/history", params={"cursor": "%%%"}, headers=auth(user_id)
    )
    assert bad.status_code == 422 and bad.json()["code"] == "PAY007"


# --- command status and the 202 path ---------------------------------------------------------


async def test_reply_timeout_gives_202_with_a_status_url(settings, worker, relay, user_id):
    import httpx

    slow = start_ingress(settings.model_copy(update={"payment_reply_timeout": 0.0}), "ingress-202")
    try:
        async with httpx.AsyncClient(base_url=slow.url, timeout=20) as client:
            response = await grant_http(client, user_id, 5)
            assert response.status_code == 202, response.text
            location = response.headers["location"]
            assert location == f"/payment/commands/{response.json()['commandId']}"
            stranger = await client.get(location, headers=auth(f"{user_id}-x"))
            assert stranger.status_code == 404
            for _ in range(200):
                status = (await client.get(location, headers=auth(user_id))).json()
                if status["status"] != "pending":
                    break
                await asyncio.sleep(0.05)
            assert status["status"] == "applied"
            assert status["result"]["credits"] == 5
    finally:
        slow.process.stop()


async def test_unknown_command_is_404(http, user_id):
    response = await http.get(f"/payment/commands/{uuid.uuid4()}", headers=auth(user_id))
    assert response.status_code == 404 and response.json()["code"] == "PAY008"


async def test_rejected_command_status_carries_the_error(http, user_id):
    response = await charge_http(http, user_id, 1)
    assert response.status_code == 402
    command_id = response.json().get("commandId")
    assert command_id is None  # errors carry code/message/details only
    # publish one with a known id to read its status
    known = uuid.uuid4()
    body = {
        "id": str(known), "type": "credits.charge", "userId": user_id,
        "payload": {"credits": 1, "reference": "b"},
    }
    await http.post("/payment/commands/", json=body, headers=auth("svc", "service"))
    status = (await http.get(f"/payment/commands/{known}", headers=auth(user_id))).json()
    assert status["status"] == "rejected" and status["error"]["code"] == "PAY001"


@pytest.mark.parametrize(
    ("kind", "payload", "roles"),
    [
        ("purchase.confirm", {"paymentIntentId": "pi_forged", "amountReceived": 100, "currency": "usd",
                              "stripeEventId": "evt_forged"}, ("service",)),
        ("purchase.confirm", {"paymentIntentId": "pi_forged", "amountReceived": 100, "currency": "usd",
                              "stripeEventId": "evt_forged"}, ("admin",)),
        ("membership.grant_period", {
            "subscriptionId": "sub_forged", "stripeEventId": "evt_forged", "invoiceId": "in_forged",
            "periodStart": "2026-12-01T00:00:00Z", "periodEnd": "2027-01-01T00:00:00Z",
            "amountPaid": 0, "currency": "usd"}, ("admin",)),
        ("credits.transfer", {"toUserId": "u-x", "credits": 1, "reason": "r"}, ("service",)),
        ("credits.grant", {"credits": 500, "reason": "free money"}, ("service",)),
        ("credits.expire", {"batchId": str(uuid.uuid4())}, ("service",)),
        ("fraud.resolve", {"flagId": str(uuid.uuid4()), "resolution": "cleared",
                           "resolvedBy": "svc"}, ("service",)),
    ],
)
async def test_commands_that_grant_from_stripe_cannot_be_published_over_http(
    http, engine, user_id, kind, payload, roles
):
    body = {"id": str(uuid.uuid4()), "type": kind, "userId": user_id, "payload": payload}
    response = await http.post("/payment/commands/", json=body, headers=auth("caller", *roles))
    assert response.status_code == 403 and response.json()["code"] == "PAY010", response.text
    assert response.json()["details"]["type"] == kind
    async with engine.connect() as conn:
        from sqlalchemy import text

        seen = await conn.scalar(
            text("SELECT count(*) FROM processed_commands WHERE command_id = :id"), {"id": body["id"]}
        )
    assert seen == 0, "refused before anything was published"


# --- docs and health ----------------------------------------------------------------------------


async def test_docs_schemas_asyncapi_health_and_metrics(http, ingress):
    openapi = (await http.get("/payment/openapi.json")).json()
    assert "/payment/credits/balance" in openapi["paths"]
    grant = openapi["components"]["schemas"]["GrantRequest"]
    assert grant["additionalProperties"] is False, "the models refuse unknown keys; so says the doc"
    assert grant["properties"]["userId"]["pattern"] == r"^[A-Za-z0-9_.:@\-]+$"
    assert grant["properties"]["metadata"] == {
        "additionalProperties": True, "maxProperties": 50, "title": "Metadata", "type": "object"}
    assert (await http.get("/payment/docs")).status_code == 200
    schemas = (await http.get("/payment/schemas")).json()
    from schemas.commands import COMMAND_MODELS

    served = set(schemas["commands"])
    assert served == {m.model_fields["type"].default for m in COMMAND_MODELS}
    assert {"credits.charge", "credits.hold", "credits.capture", "credits.release",
            "credits.refund", "credits.grant", "credits.transfer", "purchase.confirm"} <= served
    assert "userId" in schemas["commands"]["credits.charge"]["properties"]
    asyncapi = (await http.get("/payment/asyncapi.json")).json()
    assert {"payment.commands", "payment.events"} <= set(asyncapi["channels"])
    assert (await http.get("/payment/asyncapi")).status_code == 200
    assert (await http.get("/payment/health")).json() == {"status": "ok"}
    ready = (await http.get("/payment/ready")).json()
    assert ready["checks"] == {"postgres": "ok", "redis": "ok", "kafka": "ok"}
    assert (await http.get("/metrics")).status_code == 404, "metrics are not on the public port"
    async with httpx.AsyncClient(timeout=5) as scraper:
        metrics = (await scraper.get(ingress.metrics_url)).text
    assert "payment_http_requests_total" in metrics


async def test_logs_are_json_lines_without_tokens_or_secrets(http, ingress, worker, settings, user_id):
    import json

    bearer = auth("ops-admin", "admin")
    bearer["Idempotency-Key"] = str(uuid.uuid4())
    correlation = str(uuid.uuid4())
    bearer["X-Correlation-Id"] = correlation
    response = await http.post(
        "/payment/credits/grant",
        json={"userId": user_id, "credits": 2, "reason": "log check"},
        headers=bearer,
    )
    assert response.status_code == 200
    await http.get("/payment/credits/balance", headers={"Authorization": "Bearer eyJhbGciOi.bad.x"})
    await asyncio.sleep(0.2)
    for process in (ingress.process, worker):
        text = process.log()
        assert JWT_SECRET not in text
        assert bearer["Authorization"][7:] not in text
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines, process.name
        for line in lines:
            entry = json.loads(line)  # one JSON object per line
            assert entry["service"] == settings.payment_service_name == "payment-under-test", line
    assert correlation in ingress.process.log(), "the request's correlation id is logged"
