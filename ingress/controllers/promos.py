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
from services.promos import codes
from services.promos import use_cases as promos


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
            preview = await promos.preview_promo(
                resources_of(request).uow, data.code, pack_id=data.pack_id, plan_id=data.plan_id,
                user_id=principal.subject, now=datetime.now(UTC),
            )
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
        target = await promos.find_target(res.uow, pack_id=data.pack_id, plan_id=data.plan_id)

        async def action(reservation_id: uuid.UUID) -> Reply:
            row, preview = await promos.reserve_promo(
                res.uow, data.code, target, principal.subject, reservation_id=reservation_id,
                ttl=timedelta(seconds=res.settings.promo_reservation_ttl_seconds),
                now=datetime.now(UTC), source=client_address(request),
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
        return await create_idempotently(request, principal, data, promos.create_promo_code, PromoCodeRead,
                                         key=idempotency_key)

    @get("/", guards=[admin_only], security=BEARER, operation_id="listPromoCodes",
         responses=error_responses(*AUTHED_ERRORS))
    async def list_codes(self, request: Request[Any, Any, Any]) -> list[PromoCodeRead]:
        """Newest first, with live uses and redemptions."""
        listed = await promos.list_promo_codes(resources_of(request).uow)
        return [PromoCodeRead.model_validate(c) for c in listed]

    @patch("/{code_id:uuid}", guards=[admin_only], security=BEARER, operation_id="updatePromoCode",
           responses=error_responses(*WRITE_ERRORS, 404))
    async def update(
        self, request: Request[Any, Any, Any], code_id: uuid.UUID, data: PromoCodeUpdate
    ) -> PromoCodeRead:
        """Limits, dates, targets and the active flag (deactivate: `active: false`)."""
        changes = data.model_dump(exclude_unset=True, by_alias=False)
        changed = await promos.change_promo_code(resources_of(request).uow, code_id, changes)
        return PromoCodeRead.model_validate(changed)

    @get("/{code_id:uuid}/stats", guards=[admin_only], security=BEARER, operation_id="promoCodeStats",
         responses=error_responses(*AUTHED_ERRORS, 404))
    async def stats(self, request: Request[Any, Any, Any], code_id: uuid.UUID) -> PromoStatsRead:
        return PromoStatsRead.model_validate(
            await promos.promo_code_stats(resources_of(request).uow, code_id)
        )
