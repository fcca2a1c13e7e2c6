"""Fraud review for admins: the flags the worker raised, and their resolution."""

import uuid
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter

from ingress.auth import BEARER, Principal, admin_only
from ingress.deps import (
    IdempotencyKey,
    correlation_id,
    provide_principal,
    resources_of,
    source_of,
    submit_idempotently,
)
from ingress.errors import AUTHED_ERRORS, WRITE_ERRORS, error_responses
from ingress.replies import pending_response
from schemas.api import CommandAppliedRead
from schemas.commands import ResolveFraudFlag, ResolvePayload
from schemas.fraud_api import FraudFlagPage, FraudFlagRead, ResolveRequest
from services.fraud.use_cases import get_fraud_flag, list_fraud_flags


class FraudFlagsController(Controller):
    path = "/payment/admin/fraud-flags"
    tags = ["fraud"]
    guards = [admin_only]
    security = BEARER
    dependencies = {"principal": Provide(provide_principal)}

    @get("/", operation_id="listFraudFlags", responses=error_responses(*AUTHED_ERRORS))
    async def list_flags(
        self,
        request: Request[Any, Any, Any],
        status: Literal["open", "cleared", "confirmed"] | None = None,
        user_id: Annotated[str | None, Parameter(query="userId", max_length=128)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
    ) -> FraudFlagPage:
        """Newest first; `status=open` is the review queue; pass `nextCursor` back as
        `cursor` while `hasMore`."""
        rows, next_cursor = await list_fraud_flags(
            resources_of(request).uow, status=status, user_id=user_id, limit=limit, cursor=cursor
        )
        return FraudFlagPage(items=[FraudFlagRead.model_validate(r) for r in rows],
                             next_cursor=next_cursor, has_more=next_cursor is not None)

    @post("/{flag_id:uuid}/resolve", operation_id="resolveFraudFlag", status_code=200,
          responses=error_responses(*WRITE_ERRORS, 404) | pending_response())
    async def resolve(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        flag_id: uuid.UUID,
        data: ResolveRequest,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CommandAppliedRead]:
        """cleared releases the credits the flag froze; confirmed takes them back."""
        flag = await get_fraud_flag(resources_of(request).uow, flag_id)

        def build(command_id: uuid.UUID) -> ResolveFraudFlag:
            return ResolveFraudFlag(
                id=command_id,
                user_id=flag["user_id"],
                correlation_id=correlation_id(request),
                source=source_of(principal),
                payload=ResolvePayload(flag_id=flag_id, resolution=data.resolution, note=data.note,
                                       resolved_by=principal.subject),
            )

        return await submit_idempotently(request, principal, data.model_dump(mode="json"), build,
                                         key=idempotency_key)
