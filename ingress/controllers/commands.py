"""Commands over HTTP: status for everyone (own commands), publishing for services."""

import uuid
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import Provide

from ingress.auth import Principal, authenticated, privileged
from ingress.deps import provide_principal, resources_of, submit_idempotently
from schemas.api import CommandStatusRead, ErrorBody
from schemas.commands import CommandRequest
from services.errors import NotFound


class CommandsController(Controller):
    path = "/payment/commands"
    tags = ["commands"]
    dependencies = {"principal": Provide(provide_principal)}

    @get("/{command_id:uuid}", guards=[authenticated], operation_id="getCommand")
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
            )
        owner = await res.gateway.pending_owner(command_id)
        if owner is None or not principal.may_see(owner):
            raise NotFound("no such command")
        return CommandStatusRead(command_id=command_id, status="pending")

    @post("/", guards=[privileged], operation_id="publishCommand", status_code=200)
    async def publish(
        self, request: Request[Any, Any, Any], principal: Principal, data: CommandRequest
    ) -> Response[Any]:
        """Publish any ledger command (service token); the body's `id` is its idempotency key."""
        command = data.root
        return await submit_idempotently(
            request, principal, command.model_dump(mode="json"), lambda _derived: command
        )
