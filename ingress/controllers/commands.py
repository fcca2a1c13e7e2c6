"""Commands over HTTP: status for everyone (own commands), publishing for services."""

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide

from ingress.auth import BEARER, Principal, authenticated, privileged
from ingress.deps import IdempotencyKey, provide_principal, resources_of, submit_idempotently
from ingress.errors import AUTHED_ERRORS, WRITE_ERRORS, error_responses
from ingress.replies import pending_response
from schemas.api import CommandAppliedRead, CommandStatusRead, ErrorBody
from schemas.commands import CommandRequest
from services.errors import Forbidden, NotFound
from services.evidence.zones import PUBLIC_COMMANDS

# Commands a caller may publish over HTTP, by role. A service gets the public zone's
# commands, the ones it could publish on `payment.commands` itself; an admin also the
# payment-zone commands an admin may ask for. Stripe-derived commands (purchase.*,
# membership.*, fraud.record_card) come only from the verified webhook: credits are never
# granted on a caller's word, however trusted.
SERVICE_COMMANDS = PUBLIC_COMMANDS
ADMIN_COMMANDS = PUBLIC_COMMANDS | {"credits.grant", "credits.transfer", "credits.expire",
                                    "fraud.resolve"}


class CommandsController(Controller):
    path = "/payment/commands"
    tags = ["commands"]
    dependencies = {"principal": Provide(provide_principal)}

    @get("/{command_id:uuid}", guards=[authenticated], security=BEARER, operation_id="getCommand",
         responses=error_responses(*AUTHED_ERRORS, 404))
    async def status(
        self, request: Request[Any, Any, Any], principal: Principal, command_id: uuid.UUID
    ) -> CommandStatusRead:
        """`pending`, `applied` (with the result) or `rejected` (with the PAY error)."""
        res = resources_of(request)
        stored = await res.gateway.stored(command_id)
        if stored is not None:
            if not principal.may_see(stored["user_id"]):
                raise NotFound("no such command")
            applied = stored["status"] == "applied"
            return CommandStatusRead(
                command_id=command_id,
                status=stored["status"],
                type=stored["type"],
                result=stored["result"] if applied else None,
                error=None if applied else ErrorBody.model_validate(stored["result"]),
                fingerprint=stored.get("fingerprint"),
            )
        owner = await res.gateway.pending_owner(command_id)
        if owner is None or not principal.may_see(owner):
            raise NotFound("no such command")
        return CommandStatusRead(command_id=command_id, status="pending")

    @post("/", guards=[privileged], security=BEARER, operation_id="publishCommand", status_code=200,
          responses=error_responses(*WRITE_ERRORS, 402, 404) | pending_response())
    async def publish(
        self,
        request: Request[Any, Any, Any],
        principal: Principal,
        data: CommandRequest,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[CommandAppliedRead]:
        """Publish any ledger command (service token); the body's `id` is its idempotency key."""
        command = data.root
        allowed = ADMIN_COMMANDS if "admin" in principal.roles else SERVICE_COMMANDS
        if command.type not in allowed:
            raise Forbidden(
                f"{command.type} cannot be published over HTTP by this role",
                type=command.type,
            )
        return await submit_idempotently(
            request, principal, command.model_dump(mode="json"), lambda _derived: command,
            key=idempotency_key,
        )
