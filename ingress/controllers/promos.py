"""Promo codes: validate and apply for users, create / change / list / stats for admins."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import Provide

from ingress.auth import BEARER, Principal, admin_only, authenticated
from ingress.deps import (
    IdempotencyKey,
    client_address,
    create_idempotently,
    provide_principal,
    reply_idempotently,
    resources_of,
)
from ingress.errors import AUTHED_ERRORS, WRITE_ERRORS, error_responses
from ingress.gateway import Reply
from schemas.promo_api import (
    PromoApplyRead,
    PromoCodeCreate,
    PromoCodeRead,
    PromoCodeUpdate,
    PromoPreviewRead,
    PromoStatsRead,
    PromoTarget,
)
from services.memberships.plans import get_plan
from services.promos import codes, reservations
from services.promos.rules import Target
from services.promos.stats import promo_stats
from services.purchases.credit_packs import get_pack


async def target_of(request: Request[Any, Any, Any], body: PromoTarget) -> Target:
    async with resources_of(request).engine.connect() as conn:
        if body.pack_id is not None:
            pack = await get_pack(conn, body.pack_id)
            return Target("pack", pack["id"], pack["price"], pack["currency"])
        assert body.plan_id is not None
        plan = await get_plan(conn, body.plan_id)
        return Target("plan", plan["id"], plan["price"], plan["currency"])


class PromoCodesController(Controller):
    path = "/payment/promo-codes"
    tags = ["promo codes"]
    dependencies = {"principal": Provide(provide_principal)}

    @post("/validate", guards=[authenticated], operation_id="validatePromoCode", status_code=200,
          security=BEARER, responses=error_responses(*WRITE_ERRORS, 404))
    async def validate(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: PromoTarget,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PromoPreviewRead]:
        """The discount the code would give; PAY003 with `details.reason` if none. Reads only
        (with a key, a retry sees the first answer even if the code changed since)."""

        async def action(_: uuid.UUID) -> Reply:
            target = await target_of(request, data)
            async with resources_of(request).engine.connect() as conn:
                preview = await reservations.validate(conn, data.code, target, principal.subject,
                                                      datetime.now(UTC))
            read = PromoPreviewRead.model_validate({**preview.as_dict(),
                                                    "code": codes.normalize(data.code)})
            return Reply(200, read.model_dump(mode="json"), {})

        return await reply_idempotently(request, principal, data.model_dump(mode="json"), action,
                                        key=idempotency_key)

    @post("/apply", guards=[authenticated], security=BEARER, operation_id="applyPromoCode", status_code=200,
          responses=error_responses(*WRITE_ERRORS, 404))
    async def apply(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: PromoTarget,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PromoApplyRead]:
        """Reserve one use for the caller; pass `redemptionId` to purchase or subscribe.
        Released if the payment fails, or PROMO_RESERVATION_TTL_SECONDS after this."""
        res = resources_of(request)
        target = await target_of(request, data)

        async def action(reservation_id: uuid.UUID) -> Reply:
            now = datetime.now(UTC)
            async with res.engine.begin() as conn:
                row, preview = await reservations.reserve(
                    conn, data.code, target, principal.subject, reservation_id=reservation_id,
                    ttl=timedelta(seconds=res.settings.promo_reservation_ttl_seconds), now=now,
                    source=client_address(request),
                )
            body = {**preview.as_dict(), "code": row["code"], "redemption_id": reservation_id,
                    "expires_at": row["expires_at"]}
            return Reply(200, PromoApplyRead.model_validate(body).model_dump(mode="json"), {})

        return await reply_idempotently(request, principal, data.model_dump(mode="json"), action,
                                        key=idempotency_key)

    @post("/", guards=[admin_only], security=BEARER, operation_id="createPromoCode", status_code=201,
          responses=error_responses(*WRITE_ERRORS))
    async def create(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: PromoCodeCreate,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PromoCodeRead]:
        return await create_idempotently(request, principal, data, codes.create_code, PromoCodeRead,
                                         key=idempotency_key)

    @get("/", guards=[admin_only], security=BEARER, operation_id="listPromoCodes",
         responses=error_responses(*AUTHED_ERRORS))
    async def list_codes(self, request: Request[Any, Any, Any]) -> list[PromoCodeRead]:
        """Newest first, with live uses and redemptions."""
        async with resources_of(request).engine.connect() as conn:
            return [PromoCodeRead.model_validate(c) for c in await codes.list_codes(conn)]

    @patch("/{code_id:uuid}", guards=[admin_only], security=BEARER, operation_id="updatePromoCode",
           responses=error_responses(*WRITE_ERRORS, 404))
    async def update(
        self, request: Request[Any, Any, Any], code_id: uuid.UUID, data: PromoCodeUpdate
    ) -> PromoCodeRead:
        """Limits, dates, targets and the active flag (deactivate: `active: false`)."""
        changes = data.model_dump(exclude_unset=True, by_alias=False)
        async with resources_of(request).engine.begin() as conn:
            return PromoCodeRead.model_validate(await codes.update_code(conn, code_id, changes))

    @get("/{code_id:uuid}/stats", guards=[admin_only], security=BEARER, operation_id="promoCodeStats",
         responses=error_responses(*AUTHED_ERRORS, 404))
    async def stats(self, request: Request[Any, Any, Any], code_id: uuid.UUID) -> PromoStatsRead:
        async with resources_of(request).engine.connect() as conn:
            return PromoStatsRead.model_validate(await promo_stats(conn, code_id))
