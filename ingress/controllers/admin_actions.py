"""The support console's actions and audit trail (admins only).

Each action is a command through the normal path (the gateway), keyed by the admin, the
route and the required `Idempotency-Key` (a double click is one command), and recorded
in the append-only audit with the admin and the reason in the transaction that records
its evidence, before it is published. The reply is the command's result or PAY error.
"""

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import HeaderParameter, Parameter

from ingress.auth import BEARER, Principal, admin_only
from ingress.deps import correlation_id, provide_principal, reply_idempotently, resources_of, source_of
from ingress.errors import AUTHED_ERRORS, WRITE_ERRORS, error_responses
from ingress.evidence import request_evidence
from ingress.gateway import Reply
from ingress.replies import pending_response
from schemas.api import CommandAppliedRead
from schemas.commands import (
    CommandEnvelope,
    GrantCredits,
    GrantPayload,
    ReleaseCredits,
    ReleasePayload,
    ResendReceipt,
    ResendReceiptPayload,
    ResolveFraudFlag,
    ResolvePayload,
)
from schemas.support_actions_api import (
    AuditEntryRead,
    AuditPage,
    SupportGrantRequest,
    SupportRefundPurchaseRequest,
    SupportReleaseHoldRequest,
    SupportResendReceiptRequest,
    SupportResolveFraudFlagRequest,
)
from services.errors import NotFound
from services.evidence.zones import Evidence
from services.fraud.use_cases import get_fraud_flag
from services.purchases.refunds import refund_purchase_money
from services.support_actions.models import Action, AdminAction
from services.support_actions.use_cases import audit_csv, list_admin_actions, record_admin_action

RequiredIdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        required=True,
        description="Required here (422 PAY007 without): one key per form, so a double "
        "click or a retry is one action (the command id is derived from the admin, the "
        "route and the key); the same key with another body is 422 PAY012.",
    ),
]
CustomerId = Annotated[
    str, Parameter(max_length=128, pattern=r"^[A-Za-z0-9_.:@\-]+$", description="The customer.")
]
Built = tuple[CommandEnvelope, dict[str, Any]]
ACTION_ERRORS = error_responses(*WRITE_ERRORS, 402, 404) | pending_response()


async def act(
    request: Request[Any, Any, Any],
    principal: Principal,
    user_id: str,
    action: Action,
    data: SupportGrantRequest | SupportRefundPurchaseRequest | SupportReleaseHoldRequest
    | SupportResolveFraudFlagRequest | SupportResendReceiptRequest,
    key: str,
    build: Callable[[uuid.UUID], Awaitable[Built]],
) -> Response[Any]:
    """Build the command (once per key), record the audit row with its evidence, publish
    and wait; `build`'s extra fields (a refund's money) go into a 200 or 202 reply."""
    res = resources_of(request)
    body = {"userId": user_id, **data.model_dump(mode="json", exclude_none=True)}

    async def run(command_id: uuid.UUID) -> Reply:
        command, extra = await build(command_id)
        audit = AdminAction(admin=principal.subject, action=action, user_id=user_id,
                            reason=data.reason, idempotency_key=key, request=body)

        async def record(built: CommandEnvelope, evidence: Evidence | None) -> None:
            await record_admin_action(res.uow, audit, built, evidence)

        reply = await res.gateway.submit(
            command, request_evidence(request, principal, command), record=record
        )
        if reply.status in (200, 202) and isinstance(reply.body, dict):
            reply.body.update(extra)
        return reply

    return await reply_idempotently(request, principal, body, run, key=key)


def envelope(request: Request[Any, Any, Any], principal: Principal, command_id: uuid.UUID) -> dict[str, Any]:
    return {"id": command_id, "correlation_id": correlation_id(request),
            "source": source_of(principal)}


class AdminActionsController(Controller):
    path = "/payment/admin"
    tags = ["support console"]
    guards = [admin_only]
    security = BEARER
    dependencies = {"principal": Provide(provide_principal)}

    @post("/customers/{user_id:str}/grant", operation_id="supportGrant", status_code=200,
          responses=ACTION_ERRORS)
    async def grant(
        self, request: Request[Any, Any, Any], principal: Principal, user_id: CustomerId,
        data: SupportGrantRequest, idempotency_key: RequiredIdempotencyKey,
    ) -> Response[CommandAppliedRead]:
        """Goodwill credits (a PROMOTIONAL batch, `credits.grant`), with the reason."""

        async def build(command_id: uuid.UUID) -> Built:
            return GrantCredits(
                **envelope(request, principal, command_id), user_id=user_id,
                payload=GrantPayload(credits=data.credits, reason=data.reason,
                                     expires_at=data.expires_at,
                                     metadata={"grantedBy": principal.subject}),
            ), {}

        return await act(request, principal, user_id, "grant", data, idempotency_key, build)

    @post("/customers/{user_id:str}/refund-purchase", operation_id="supportRefundPurchase",
          status_code=200, responses=ACTION_ERRORS)
    async def refund_purchase(
        self, request: Request[Any, Any, Any], principal: Principal, user_id: CustomerId,
        data: SupportRefundPurchaseRequest, idempotency_key: RequiredIdempotencyKey,
    ) -> Response[CommandAppliedRead]:
        """Refund a paid purchase in Stripe, in full or `amount` (minor units), then take
        its share of credits back (`purchase.revoke`); the reply adds `amountRefunded`
        (this refund's money) and `currency`."""
        res = resources_of(request)

        async def build(command_id: uuid.UUID) -> Built:
            refund = await refund_purchase_money(
                res.engine, res.payments, user_id=user_id, purchase_id=data.purchase_id,
                amount=data.amount, command=envelope(request, principal, command_id),
            )
            return refund.command, {"amountRefunded": refund.amount, "currency": refund.currency}

        return await act(request, principal, user_id, "refund_purchase", data, idempotency_key,
                         build)

    @post("/customers/{user_id:str}/release-hold", operation_id="supportReleaseHold",
          status_code=200, responses=ACTION_ERRORS)
    async def release_hold(
        self, request: Request[Any, Any, Any], principal: Principal, user_id: CustomerId,
        data: SupportReleaseHoldRequest, idempotency_key: RequiredIdempotencyKey,
    ) -> Response[CommandAppliedRead]:
        """Release an open hold (`credits.release`): its credits go back to their batches.
        A dispute's or fraud flag's freeze is refused (403 PAY010): its review settles it."""

        async def build(command_id: uuid.UUID) -> Built:
            return ReleaseCredits(
                **envelope(request, principal, command_id), user_id=user_id,
                payload=ReleasePayload(hold_id=data.hold_id, reason=data.reason),
            ), {}

        return await act(request, principal, user_id, "release_hold", data, idempotency_key,
                         build)

    @post("/customers/{user_id:str}/resolve-fraud-flag", operation_id="supportResolveFraudFlag",
          status_code=200, responses=ACTION_ERRORS)
    async def resolve_fraud_flag(
        self, request: Request[Any, Any, Any], principal: Principal, user_id: CustomerId,
        data: SupportResolveFraudFlagRequest, idempotency_key: RequiredIdempotencyKey,
    ) -> Response[CommandAppliedRead]:
        """Resolve the customer's fraud flag (`fraud.resolve`); the reason is its note."""
        res = resources_of(request)

        async def build(command_id: uuid.UUID) -> Built:
            flag = await get_fraud_flag(res.uow, data.flag_id)
            if flag["user_id"] != user_id:
                raise NotFound("no such fraud flag", flagId=str(data.flag_id))
            return ResolveFraudFlag(
                **envelope(request, principal, command_id), user_id=user_id,
                payload=ResolvePayload(flag_id=data.flag_id, resolution=data.resolution,
                                       note=data.reason, resolved_by=principal.subject),
            ), {}

        return await act(request, principal, user_id, "resolve_fraud_flag", data,
                         idempotency_key, build)

    @post("/customers/{user_id:str}/resend-receipt", operation_id="supportResendReceipt",
          status_code=200, responses=ACTION_ERRORS)
    async def resend_receipt(
        self, request: Request[Any, Any, Any], principal: Principal, user_id: CustomerId,
        data: SupportResendReceiptRequest, idempotency_key: RequiredIdempotencyKey,
    ) -> Response[CommandAppliedRead]:
        """Email a paid purchase's receipt again (`receipt.resend`: a new `receipt.requested`
        event); 409 PAY014 for a purchase not paid, 404 PAY008 for an unknown one."""

        async def build(command_id: uuid.UUID) -> Built:
            return ResendReceipt(
                **envelope(request, principal, command_id), user_id=user_id,
                payload=ResendReceiptPayload(purchase_id=data.purchase_id),
            ), {}

        return await act(request, principal, user_id, "resend_receipt", data, idempotency_key,
                         build)

    @get("/audit", operation_id="listAdminActions", responses=error_responses(*AUTHED_ERRORS))
    async def audit(
        self,
        request: Request[Any, Any, Any],
        user_id: Annotated[str | None, Parameter(query="userId", max_length=128)] = None,
        admin: Annotated[str | None, Parameter(max_length=255)] = None,
        since: Annotated[datetime | None, Parameter(query="from")] = None,
        until: Annotated[datetime | None, Parameter(query="to")] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
    ) -> AuditPage:
        """Every admin action, newest first: who, when, why, the command's status
        (pending / applied / rejected with its PAY code) and its ledger effect."""
        rows, next_cursor = await list_admin_actions(
            resources_of(request).uow, user_id=user_id, admin=admin, since=since, until=until,
            limit=limit, cursor=cursor,
        )
        return AuditPage(items=[AuditEntryRead.model_validate(r) for r in rows],
                         next_cursor=next_cursor, has_more=next_cursor is not None)

    @get("/audit.csv", operation_id="exportAdminActions", media_type="text/csv",
         responses=error_responses(*AUTHED_ERRORS))
    async def audit_csv(
        self,
        request: Request[Any, Any, Any],
        user_id: Annotated[str | None, Parameter(query="userId", max_length=128)] = None,
        admin: Annotated[str | None, Parameter(max_length=255)] = None,
        since: Annotated[datetime | None, Parameter(query="from")] = None,
        until: Annotated[datetime | None, Parameter(query="to")] = None,
        limit: Annotated[int, Parameter(ge=1, le=10_000)] = 1000,
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
    ) -> Response[str]:
        """The audit rows as CSV (cells a spreadsheet would run as formulas are quoted);
        `X-Next-Cursor` names the next page when there is one."""
        rows, next_cursor = await list_admin_actions(
            resources_of(request).uow, user_id=user_id, admin=admin, since=since, until=until,
            limit=limit, cursor=cursor,
        )
        headers = {"Content-Disposition": 'attachment; filename="admin-actions.csv"'}
        if next_cursor:
            headers["X-Next-Cursor"] = next_cursor
        return Response(audit_csv(rows), media_type="text/csv", headers=headers)
