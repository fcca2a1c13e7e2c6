"""Credits: balance and history for users; grant, refund and transfer for privileged callers."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide
from litestar.params import Parameter

from ingress.auth import BEARER, Principal, admin_only, authenticated, privileged
from ingress.deps import (
    IdempotencyKey,
    provide_principal,
    resources_of,
    source_of,
    submit_idempotently,
    target_user,
)
from ingress.deps import correlation_id as correlation_of
from ingress.errors import AUTHED_ERRORS, WRITE_ERRORS, error_responses
from ingress.replies import pending_response
from schemas.api import (
    BalanceRead,
    CommandAppliedRead,
    GrantRequest,
    HistoryPage,
    RefundRequest,
    TransactionType,
    TransferRequest,
)
from schemas.commands import (
    CommandEnvelope,
    GrantCredits,
    GrantPayload,
    RefundCredits,
    RefundPayload,
    TransferCredits,
    TransferPayload,
)
from services.ledger.use_cases import list_history, read_balance
from services.purchases.refunds import purchase_refund


class CreditsController(Controller):
    path = "/payment/credits"
    tags = ["credits"]
    dependencies = {"principal": Provide(provide_principal)}

    @get("/balance", guards=[authenticated], security=BEARER, operation_id="getBalance",
         responses=error_responses(*AUTHED_ERRORS))
    async def balance(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        user_id: Annotated[str | None, Parameter(query="userId", max_length=128)] = None,
    ) -> BalanceRead:
        """Available, held and total credits, with open batches in the order they are spent."""
        who = target_user(principal, user_id)
        return BalanceRead.model_validate(await read_balance(resources_of(request).uow, who))

    @get("/history", guards=[authenticated], security=BEARER, operation_id="getHistory",
         responses=error_responses(*AUTHED_ERRORS))
    async def history(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Parameter(max_length=200)] = None,
        type_: Annotated[list[TransactionType] | None, Parameter(query="type")] = None,
        since: Annotated[datetime | None, Parameter(query="from")] = None,
        until: Annotated[datetime | None, Parameter(query="to")] = None,
        user_id: Annotated[str | None, Parameter(query="userId", max_length=128)] = None,
    ) -> HistoryPage:
        """Ledger transactions, newest first; pass `nextCursor` back as `cursor` while `hasMore`."""
        who = target_user(principal, user_id)
        items, next_cursor = await list_history(
            resources_of(request).uow,
            who,
            limit=limit,
            cursor=cursor,
            types=[t.value for t in type_] if type_ else None,
            since=since,
            until=until,
        )
        return HistoryPage.model_validate(
            {"items": items, "next_cursor": next_cursor, "has_more": next_cursor is not None}
        )

    @post("/grant", guards=[admin_only], security=BEARER, operation_id="grantCredits",
          status_code=200,
          responses=error_responses(*WRITE_ERRORS) | pending_response())
    async def grant(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: GrantRequest,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CommandAppliedRead]:
        """Goodwill or adjustment credits as a PROMOTIONAL batch (admin only: a grant
        creates credits nobody paid for, so it rests on an admin's request)."""

        def build(command_id: uuid.UUID) -> GrantCredits:
            return GrantCredits(
                id=command_id,
                user_id=data.user_id,
                correlation_id=correlation_of(request),
                source=source_of(principal),
                payload=GrantPayload(
                    credits=data.credits,
                    reason=data.reason,
                    expires_at=data.expires_at,
                    metadata={**data.metadata, "grantedBy": principal.subject},
                ),
            )

        return await submit_idempotently(request, principal, data.model_dump(mode="json"), build,
                                         key=idempotency_key)

    @post("/refund", guards=[privileged], security=BEARER, operation_id="refundCredits", status_code=200,
          responses=error_responses(*WRITE_ERRORS, 402, 404) | pending_response())
    async def refund(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: RefundRequest,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CommandAppliedRead]:
        """Refund a CREDIT_USAGE transaction (credits back to their original batches), or a
        CREDIT_PURCHASE (money back through Stripe, the credits' share taken back)."""
        res = resources_of(request)

        async def build(command_id: uuid.UUID) -> CommandEnvelope:
            envelope: dict[str, Any] = {
                "id": command_id,
                "correlation_id": correlation_of(request),
                "source": source_of(principal),
            }
            revoke = await purchase_refund(
                res.engine,
                res.payments,
                user_id=data.user_id,
                transaction_id=data.transaction_id,
                amount=data.amount,
                command=envelope,
            )
            if revoke is not None:
                return revoke
            return RefundCredits(
                **envelope,
                user_id=data.user_id,
                payload=RefundPayload(
                    transaction_id=data.transaction_id, credits=data.credits, reason=data.reason
                ),
            )

        return await submit_idempotently(request, principal, data.model_dump(mode="json"), build,
                                         key=idempotency_key)

    @post("/transfer", guards=[admin_only], security=BEARER, operation_id="transferCredits", status_code=200,
          responses=error_responses(*WRITE_ERRORS, 402) | pending_response())
    async def transfer(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: TransferRequest,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CommandAppliedRead]:
        """Move credits between users (admin only: credits are not transferable by users)."""

        def build(command_id: uuid.UUID) -> TransferCredits:
            return TransferCredits(
                id=command_id,
                user_id=data.from_user_id,
                correlation_id=correlation_of(request),
                source=source_of(principal),
                payload=TransferPayload(
                    to_user_id=data.to_user_id, credits=data.credits, reason=data.reason
                ),
            )

        return await submit_idempotently(request, principal, data.model_dump(mode="json"), build,
                                         key=idempotency_key)
