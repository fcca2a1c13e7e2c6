"""Who may call what: every route of the served OpenAPI document has an audience here,
and each audience is tried by callers it must refuse (object-level checks included).

A new route without an entry fails `test_every_route_has_an_audience`, so nobody adds
an endpoint without deciding who may call it.
"""

import uuid

import pytest

from tests.conftest import auth
from tests.test_http_api import grant_http

SAMPLE = str(uuid.uuid4())
# operation id -> (audience, method, path, body). Audiences: public (anyone), user (any
# signed-in caller, own data only), privileged (service or admin), admin, stripe (signed),
# session (the console's sign-in: the identity provider or the session cookie decides who
# gets in, tried in tests/test_admin_sign_in.py).
ROUTES: dict[str, tuple[str, str, str, dict | None]] = {
    "health": ("public", "GET", "/payment/health", None),
    "ready": ("public", "GET", "/payment/ready", None),
    "getMessageSchemas": ("public", "GET", "/payment/schemas", None),
    "getAsyncApi": ("public", "GET", "/payment/asyncapi.json", None),
    "getAsyncApiPage": ("public", "GET", "/payment/asyncapi", None),
    "listCreditPacks": ("public", "GET", "/payment/credit-packs/", None),
    "getCreditPack": ("public", "GET", "/payment/credit-packs/pack_10", None),
    "listMembershipPlans": ("public", "GET", "/payment/memberships/", None),
    "getMembershipPlan": ("public", "GET", "/payment/memberships/plans/plan_basic", None),
    "getAdminDashboard": ("public", "GET", "/payment/admin", None),
    "getSupportConsole": ("public", "GET", "/payment/admin/console", None),
    "getAdminSession": ("session", "GET", "/payment/admin/session", None),
    "startAdminSignIn": ("session", "GET", "/payment/admin/sign-in", None),
    "finishAdminSignIn": ("session", "GET", "/payment/admin/callback", None),
    "devAdminSignIn": ("session", "POST", "/payment/admin/dev-sign-in", {"subject": "x"}),
    "adminSignOut": ("session", "POST", "/payment/admin/sign-out", None),
    "getPublicConfig": ("public", "GET", "/payment/config", None),
    "stripeWebhook": ("stripe", "POST", "/payment/webhooks/stripe", {}),
    "getBalance": ("user", "GET", "/payment/credits/balance", None),
    "getHistory": ("user", "GET", "/payment/credits/history", None),
    "getCommand": ("user", "GET", f"/payment/commands/{SAMPLE}", None),
    "getCurrentMembership": ("user", "GET", "/payment/memberships/current", None),
    "purchaseCreditPack": ("user", "POST", "/payment/credit-packs/pack_10/purchase", {}),
    "subscribeMembership": ("user", "POST", "/payment/memberships/plan_basic/subscribe", {}),
    "cancelMembership": ("user", "POST", "/payment/memberships/cancel", {}),
    "validatePromoCode": ("user", "POST", "/payment/promo-codes/validate",
                          {"code": "WELCOME10", "packId": "pack_10"}),
    "applyPromoCode": ("user", "POST", "/payment/promo-codes/apply",
                       {"code": "WELCOME10", "packId": "pack_10"}),
    "createPromoCode": ("admin", "POST", "/payment/promo-codes/",
                        {"code": "AUTHTEST", "kind": "percentage", "percentOff": 10}),
    "listPromoCodes": ("admin", "GET", "/payment/promo-codes/", None),
    "updatePromoCode": ("admin", "PATCH", f"/payment/promo-codes/{SAMPLE}", {"active": False}),
    "promoCodeStats": ("admin", "GET", f"/payment/promo-codes/{SAMPLE}/stats", None),
    "revenueReport": ("admin", "GET", "/payment/reports/revenue", None),
    "creditsReport": ("admin", "GET", "/payment/reports/credits", None),
    "packsReport": ("admin", "GET", "/payment/reports/packs", None),
    "churnReport": ("admin", "GET", "/payment/reports/churn", None),
    "promoCodesReport": ("admin", "GET", "/payment/reports/promo-codes", None),
    "grantCredits": ("admin", "POST", "/payment/credits/grant",
                     {"userId": "u-victim", "credits": 1, "reason": "r"}),
    "refundCredits": ("privileged", "POST", "/payment/credits/refund",
                      {"userId": "u-victim", "transactionId": SAMPLE, "reason": "r"}),
    "publishCommand": ("privileged", "POST", "/payment/commands/",
                       {"id": SAMPLE, "type": "credits.grant", "userId": "u-victim",
                        "payload": {"credits": 1, "reason": "r"}}),
    "transferCredits": ("admin", "POST", "/payment/credits/transfer",
                        {"fromUserId": "u-victim", "toUserId": "u-thief", "credits": 1,
                         "reason": "r"}),
    "createCreditPack": ("admin", "POST", "/payment/credit-packs/",
                         {"id": "pack_auth", "name": "x", "credits": 10, "price": 100}),
    "updateCreditPack": ("admin", "PATCH", "/payment/credit-packs/pack_10", {"name": "x"}),
    "archiveCreditPack": ("admin", "DELETE", "/payment/credit-packs/pack_10", None),
    "syncStripeProducts": ("admin", "POST", "/payment/products/sync", None),
    "createMembershipPlan": ("admin", "POST", "/payment/memberships/plans",
                             {"id": "plan_auth", "name": "x", "price": 100, "creditsPerPeriod": 1}),
    "updateMembershipPlan": ("admin", "PATCH", "/payment/memberships/plans/plan_basic",
                             {"name": "x"}),
    "archiveMembershipPlan": ("admin", "DELETE", "/payment/memberships/plans/plan_basic", None),
    "listFraudFlags": ("admin", "GET", "/payment/admin/fraud-flags/", None),
    "resolveFraudFlag": ("admin", "POST", f"/payment/admin/fraud-flags/{SAMPLE}/resolve",
                         {"resolution": "cleared"}),
    "searchCustomers": ("admin", "GET", "/payment/admin/customers/search?q=u-victim", None),
    "getCustomer": ("admin", "GET", "/payment/admin/customers/u-victim", None),
    "explainBalance": ("admin", "GET", "/payment/admin/customers/u-victim/explanation", None),
    "getBatch": ("admin", "GET", f"/payment/admin/batches/{SAMPLE}", None),
    "supportGrant": ("admin", "POST", "/payment/admin/customers/u-victim/grant",
                     {"credits": 1, "reason": "r"}),
    "supportRefundPurchase": ("admin", "POST", "/payment/admin/customers/u-victim/refund-purchase",
                              {"purchaseId": SAMPLE, "reason": "r"}),
    "supportReleaseHold": ("admin", "POST", "/payment/admin/customers/u-victim/release-hold",
                           {"holdId": SAMPLE, "reason": "r"}),
    "supportResolveFraudFlag": ("admin", "POST",
                                "/payment/admin/customers/u-victim/resolve-fraud-flag",
                                {"flagId": SAMPLE, "resolution": "cleared", "reason": "r"}),
    "supportResendReceipt": ("admin", "POST", "/payment/admin/customers/u-victim/resend-receipt",
                             {"purchaseId": SAMPLE, "reason": "r"}),
    "listAdminActions": ("admin", "GET", "/payment/admin/audit", None),
    "exportAdminActions": ("admin", "GET", "/payment/admin/audit.csv", None),
}
REFUSED_BY_AUDIENCE = {
    "user": [()],  # anonymous only
    "privileged": [(), ("user",)],
    "admin": [(), ("user",), ("service",)],
}


async def test_every_route_has_an_audience(http):
    served = (await http.get("/payment/openapi.json")).json()["paths"]
    operations = {op["operationId"] for ops in served.values() for op in ops.values()}
    assert operations == set(ROUTES)


@pytest.mark.parametrize("operation", sorted(k for k, v in ROUTES.items() if v[0] in REFUSED_BY_AUDIENCE))
async def test_callers_outside_the_audience_are_refused_and_nothing_changes(http, operation):
    audience, method, path, body = ROUTES[operation]
    for roles in REFUSED_BY_AUDIENCE[audience]:
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        if roles:
            headers |= auth(f"u-outsider-{uuid.uuid4().hex[:6]}", *roles)
        response = await http.request(method, path, json=body, headers=headers)
        expected = (401, "PAY009") if not roles else (403, "PAY010")
        assert (response.status_code, response.json()["code"]) == expected, (roles, response.text)
    victim = await http.get("/payment/credits/balance?userId=u-victim", headers=auth("ops", "admin"))
    assert victim.status_code == 200, victim.text
    assert victim.json()["total"] == 0, "no refused call moved the victim's credits"


@pytest.mark.parametrize("path", ["/payment/credits/balance", "/payment/credits/history",
                                  "/payment/memberships/current"])
async def test_a_user_cannot_read_another_users_data(http, user_id, path):
    assert (await grant_http(http, user_id, 3)).status_code == 200
    peek = await http.get(path, params={"userId": user_id}, headers=auth(f"{user_id}-other"))
    assert peek.status_code == 403 and peek.json()["code"] == "PAY010"
    service = await http.get(path, params={"userId": user_id}, headers=auth("svc", "service"))
    assert service.status_code in (200, 404), "services and admins may read anyone's"


async def test_a_user_cannot_see_another_users_command(http, user_id):
    granted = await grant_http(http, user_id, 2)
    command_id = granted.json()["commandId"]
    own = await http.get(f"/payment/commands/{command_id}", headers=auth(user_id))
    assert own.status_code == 200 and own.json()["status"] == "applied"
    other = await http.get(f"/payment/commands/{command_id}", headers=auth(f"{user_id}-other"))
    assert other.status_code == 404 and other.json()["code"] == "PAY008", "not even its existence"


async def test_user_writes_act_only_on_the_callers_own_account(http, user_id):
    """Purchase, subscribe and cancel take no user id: a body naming another is refused."""
    for path in ("/payment/credit-packs/pack_10/purchase", "/payment/memberships/cancel",
                 "/payment/memberships/plan_basic/subscribe"):
        response = await http.post(path, json={"userId": "u-victim"},
                                   headers={**auth(user_id), "Idempotency-Key": str(uuid.uuid4())})
        assert response.status_code == 422 and response.json()["code"] == "PAY007", path


async def test_openapi_declares_the_bearer_scheme_on_exactly_the_guarded_routes(http):
    document = (await http.get("/payment/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert "security" not in document, "no document-wide requirement: public routes stay public"
    operations = {op["operationId"]: op for ops in document["paths"].values() for op in ops.values()}
    for operation, (audience, *_) in ROUTES.items():
        security = operations[operation].get("security")
        if audience in REFUSED_BY_AUDIENCE:
            assert security == [{"bearerAuth": []}], operation
        else:
            assert security is None, f"{operation} ({audience}) must not ask for a token"
    assert operations["stripeWebhook"].get("security") is None
