"""Memberships: plans for everyone, changes for admins, subscribe / cancel for users."""

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import Provide
from litestar.params import Parameter

from ingress.auth import BEARER, Principal, admin_only, authenticated
from ingress.deps import (
    IdempotencyKey,
    client_address,
    create_idempotently,
    provide_principal,
    reply_idempotently,
    resources_of,
    target_user,
)
from ingress.errors import AUTHED_ERRORS, READ_ERRORS, WRITE_ERRORS, error_responses
from ingress.gateway import Reply
from schemas.api import CancelRequest, MembershipRead, PlanCreate, PlanRead, PlanUpdate, SubscribeRequest
from schemas.commands import SyncMembership
from services.evidence.zones import Evidence
from services.memberships import use_cases as memberships
from services.memberships.subscriptions import cancel, subscribe

PlanPath = Annotated[str, Parameter(pattern=r"^[a-z0-9_-]{1,64}$")]


async def _settle(request: Request[Any, Any, Any], sync: SyncMembership | None) -> None:
    """Hand Stripe's answer to the worker and wait for it, so a read right after this
    request sees the new state (webhooks may be late, or never come)."""
    if sync is not None:
        # The evidence: the subscription just changed through Stripe with the secret key.
        evidence = Evidence("stripe_api", sync.payload.subscription_id, "payment-ingress")
        await resources_of(request).gateway.submit(sync, evidence)


def _read(view: dict[str, Any]) -> dict[str, Any]:
    return MembershipRead.model_validate(view).model_dump(mode="json")


class MembershipsController(Controller):
    path = "/payment/memberships"
    tags = ["memberships"]
    dependencies = {"principal": Provide(provide_principal)}

    @get("/", operation_id="listMembershipPlans", responses=error_responses(429))
    async def list_plans(self, request: Request[Any, Any, Any]) -> list[PlanRead]:
        """Active plans, cheapest first."""
        return [PlanRead.model_validate(p)
                for p in await memberships.list_plans(resources_of(request).uow)]

    @get("/current", guards=[authenticated], security=BEARER, operation_id="getCurrentMembership",
         responses=error_responses(*AUTHED_ERRORS, 404))
    async def current(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        user_id: Annotated[str | None, Parameter(query="userId", max_length=128)] = None,
    ) -> MembershipRead:
        """The live membership, else the latest one (404 PAY008 when there never was one)."""
        who = target_user(principal, user_id)
        return MembershipRead.model_validate(
            await memberships.show_membership(resources_of(request).uow, who)
        )

    @get("/plans/{plan_id:str}", operation_id="getMembershipPlan",
         responses=error_responses(*READ_ERRORS, 404))
    async def get_plan(self, request: Request[Any, Any, Any], plan_id: PlanPath) -> PlanRead:
        return PlanRead.model_validate(await memberships.get_plan(resources_of(request).uow, plan_id))

    @post("/plans", guards=[admin_only], operation_id="createMembershipPlan", status_code=201,
          security=BEARER, responses=error_responses(*WRITE_ERRORS))
    async def create_plan(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: PlanCreate,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[PlanRead]:
        return await create_idempotently(request, principal, data, memberships.create_plan, PlanRead,
                                         key=idempotency_key)

    @patch("/plans/{plan_id:str}", guards=[admin_only], security=BEARER, operation_id="updateMembershipPlan",
           responses=error_responses(*AUTHED_ERRORS, 404))
    async def update_plan(
        self, request: Request[Any, Any, Any], plan_id: PlanPath, data: PlanUpdate
    ) -> PlanRead:
        """Credits and rollover apply from each membership's next grant."""
        changes = data.model_dump(exclude_unset=True, by_alias=False)
        return PlanRead.model_validate(
            await memberships.change_plan(resources_of(request).uow, plan_id, changes)
        )

    @delete("/plans/{plan_id:str}", guards=[admin_only], operation_id="archiveMembershipPlan",
            security=BEARER, status_code=200, responses=error_responses(*AUTHED_ERRORS, 404))
    async def archive_plan(self, request: Request[Any, Any, Any], plan_id: PlanPath) -> PlanRead:
        """Archive: no new subscriptions; running ones go on (never deleted)."""
        return PlanRead.model_validate(
            await memberships.archive_plan(resources_of(request).uow, plan_id)
        )

    @post("/{plan_id:str}/subscribe", guards=[authenticated], operation_id="subscribeMembership",
          security=BEARER, status_code=200, responses=error_responses(*WRITE_ERRORS, 402, 404))
    async def subscribe(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        plan_id: PlanPath,
        data: SubscribeRequest | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MembershipRead]:
        """Start a membership (or switch plan with `change`). Credits arrive with Stripe's
        signed paid-invoice event, never from this call; an active membership → PAY004."""
        res = resources_of(request)
        body = data or SubscribeRequest()

        async def action(membership_id: uuid.UUID) -> Reply:
            view, sync = await subscribe(
                res.engine, res.payments, res.settings, user_id=principal.subject, plan_id=plan_id,
                membership_id=membership_id, email=principal.email,
                payment_method=body.payment_method_id, change=body.change,
                promo_code=body.promo_code,
                redemption_id=body.redemption_id, source=client_address(request),
            )
            await _settle(request, sync)
            return Reply(200, _read(view), {})

        return await reply_idempotently(request, principal, body.model_dump(mode="json"), action,
                                        key=idempotency_key)

    @post("/cancel", guards=[authenticated], operation_id="cancelMembership", status_code=200,
          security=BEARER, responses=error_responses(*WRITE_ERRORS, 404))
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: CancelRequest | None = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[MembershipRead]:
        """Cancel at the end of the paid period, or now with `immediately`; credits already
        granted stay until they expire."""
        res = resources_of(request)
        body = data or CancelRequest()

        async def action(request_id: uuid.UUID) -> Reply:
            view, sync = await cancel(
                res.engine, res.payments, user_id=principal.subject,
                immediately=body.immediately, request_id=request_id,
            )
            await _settle(request, sync)
            return Reply(200, _read(view), {})

        return await reply_idempotently(request, principal, body.model_dump(mode="json"), action,
                                        key=idempotency_key)
