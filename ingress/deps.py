"""Request-scoped helpers shared by the controllers."""

import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from litestar import MediaType, Request, Response
from litestar.params import HeaderParameter

from ingress.auth import Principal, principal_of
from ingress.client_address import client_address_of
from ingress.evidence import request_evidence
from ingress.gateway import Reply
from ingress.idempotency import idempotency_scope, idempotent
from ingress.resources import Resources
from schemas.base import WireModel
from schemas.commands import CommandEnvelope
from services.db import UnitOfWork
from services.errors import Forbidden

log = logging.getLogger("pika.ingress")
# Every POST takes it (docs/api.md, "Writes: 200, 202 and idempotency"): declared on each
# handler so the OpenAPI document tells client generators, and passed on explicitly so the
# documented header is the one honoured. Its length is checked by ingress.idempotency (422 PAY007).
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        description="Retry-safe key (1 to 255 characters, yours per route, kept for "
        "IDEMPOTENCY_TTL): a retry with the same body replays the first reply; another "
        "body is 422 PAY012; a retry while the first runs is 409 PAY013.",
    ),
]
CommandBuilder = Callable[[uuid.UUID], CommandEnvelope | Awaitable[CommandEnvelope]]


def resources_of(request: Request[Any, Any, Any]) -> Resources:
    res: Resources = request.app.state.resources
    return res


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    return await principal_of(request)


def client_address(request: Request[Any, Any, Any]) -> str | None:
    """The client's address: the peer, or behind TRUSTED_PROXIES what they forwarded."""
    return client_address_of(request.scope, resources_of(request).settings.trusted_proxy_networks)


def correlation_id(request: Request[Any, Any, Any]) -> uuid.UUID:
    raw = request.headers.get("x-correlation-id")
    try:
        return uuid.UUID(raw) if raw else uuid.uuid4()
    except ValueError:
        return uuid.uuid4()


def source_of(principal: Principal) -> str:
    return f"http:{principal.subject}"[:100]


def target_user(principal: Principal, user_id: str | None) -> str:
    """Whose data a read is about: the caller's own, or anyone's for service/admin."""
    if user_id is None or user_id == principal.subject:
        return principal.subject
    if not principal.privileged:
        raise Forbidden("you may only see your own account")
    return user_id


def to_response(reply: Reply) -> Response[Any]:
    return Response(
        content=reply.body, status_code=reply.status, headers=reply.headers, media_type=MediaType.JSON
    )


async def submit_idempotently(
    request: Request[Any, Any, Any],
    principal: Principal,
    body: Any,
    build: CommandBuilder,
    *,
    key: str | None,
) -> Response[Any]:
    """Idempotency-Key handling + publish + wait, shared by every write endpoint."""
    res = resources_of(request)

    async def action(command_id: uuid.UUID) -> Reply:
        built = build(command_id)
        command = await built if inspect.isawaitable(built) else built
        log.info(
            "submitting %s", command.type,  # type: ignore[attr-defined]
            extra={"correlation_id": command.correlation_id, "command_id": command.id,
                   "user_id": command.user_id},
        )
        return await res.gateway.submit(command, request_evidence(request, principal, command))

    return await reply_idempotently(request, principal, body, action, key=key)


async def reply_idempotently(
    request: Request[Any, Any, Any],
    principal: Principal,
    body: Any,
    action: Callable[[uuid.UUID], Awaitable[Reply]],
    *,
    key: str | None,
) -> Response[Any]:
    """Run `action` once per caller, route and Idempotency-Key (`key`); replay its reply."""
    reply = await idempotent(
        resources_of(request).replies,
        key=key,
        scope=idempotency_scope(principal.subject, request.method, request.url.path),
        body=body,
        action=action,
    )
    return to_response(reply)


async def create_idempotently(
    request: Request[Any, Any, Any],
    principal: Principal,
    data: WireModel,
    create: Callable[[UnitOfWork, dict[str, Any]], Awaitable[dict[str, Any]]],
    read: type[WireModel],
    *,
    key: str | None,
) -> Response[Any]:
    """An admin's create (pack, plan, promo code): the use case `create` runs it in one
    transaction, 201 with `read`; a retry with the key gets the same 201 instead of 409
    "already exists"."""

    async def action(_: uuid.UUID) -> Reply:
        created = await create(resources_of(request).uow, data.model_dump(by_alias=False))
        return Reply(201, read.model_validate(created).model_dump(mode="json"), {})

    return await reply_idempotently(request, principal, data.model_dump(mode="json"), action, key=key)
