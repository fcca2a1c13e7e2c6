"""The HTTP API for platform services: balances and history to read, and the
privileged writes (grants, refunds, transfers, any command) with `Idempotency-Key`
handled for the caller.

Requests and replies are the service's own models (the generated `contracts` copy of
its `schemas/`), and every route this client calls is listed in `ROUTES`; the service's
test suite checks each against the OpenAPI document the service serves, so a renamed
route or a changed body fails there, not in a platform service.

A write gets one `Idempotency-Key` per call, kept across the client's own retries (a
dropped connection, 409 PAY013 "still running", 503 PAY015 "dependency down"): the
service applies it once and replays the first reply to a retry.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from pika_payment_client.contracts.api import (
    BalanceRead,
    CommandAppliedRead,
    CommandPendingRead,
    CommandStatusRead,
    GrantRequest,
    HistoryPage,
    RefundRequest,
    TransactionRead,
    TransferRequest,
)
from pika_payment_client.contracts.commands import COMMAND_MODELS, SCHEMA_VERSION, CommandEnvelope
from pika_payment_client.contracts.events import EVENT_MODELS
from pika_payment_client.errors import InvalidCommand, PaymentApiError, SchemaVersionMismatch

Method = Literal["GET", "POST"]
# Every route this client calls (tests/test_python_client_http.py checks each against
# the served OpenAPI document).
ROUTES: tuple[tuple[Method, str], ...] = (
    ("GET", "/payment/credits/balance"),
    ("GET", "/payment/credits/history"),
    ("POST", "/payment/credits/grant"),
    ("POST", "/payment/credits/refund"),
    ("POST", "/payment/credits/transfer"),
    ("POST", "/payment/commands"),
    ("GET", "/payment/commands/{command_id}"),
    ("GET", "/payment/schemas"),
)
TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]
WriteReply = CommandAppliedRead | CommandPendingRead
Model = TypeVar("Model", bound=BaseModel)
_RETRIED_CODES = frozenset({"PAY013", "PAY015"})


@dataclass(frozen=True)
class ContractCheck:
    """How the served contracts compare with this client's copy.

    `differing` names the message types whose JSON Schema the service serves
    differently (a service newer or older than this client); `missing` those it does
    not serve at all. Both empty: the client and the service agree exactly.
    """

    schema_version: int
    differing: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def identical(self) -> bool:
        return not self.differing and not self.missing


class PaymentsHttp:
    """Client of the payment service's HTTP API.

    `token` is the caller's bearer token (a service or admin JWT for other users' data
    and the privileged writes), or a function returning a fresh one for each request.
    """

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._token = token
        self._attempts = max(1, attempts)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        if client is not None and not str(client.base_url):
            self._client.base_url = httpx.URL(base_url)

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> "PaymentsHttp":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # Reads

    async def balance(self, user_id: str | None = None) -> BalanceRead:
        """Available, held and total credits, and the open batches in spend order."""
        reply = await self._request("GET", "/payment/credits/balance", params=_user(user_id))
        return _parse(BalanceRead, reply)

    async def history(
        self,
        user_id: str | None = None,
        *,
        limit: int = 20,
        cursor: str | None = None,
        types: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> HistoryPage:
        """One page of transactions, newest first (`next_cursor` fetches the next)."""
        params: dict[str, Any] = {**_user(user_id), "limit": limit}
        if cursor:
            params["cursor"] = cursor
        if types:
            params["type"] = list(types)
        if since:
            params["from"] = since.isoformat()
        if until:
            params["to"] = until.isoformat()
        reply = await self._request("GET", "/payment/credits/history", params=params)
        return _parse(HistoryPage, reply)

    async def iter_history(
        self, user_id: str | None = None, *, page_size: int = 100, types: Sequence[str] = ()
    ) -> AsyncIterator[TransactionRead]:
        """Every transaction, newest first, page after page."""
        cursor: str | None = None
        while True:
            page = await self.history(user_id, limit=page_size, cursor=cursor, types=types)
            for item in page.items:
                yield item
            if not page.has_more or not page.next_cursor:
                return
            cursor = page.next_cursor

    async def command_status(self, command_id: uuid.UUID) -> CommandStatusRead:
        """`pending`, `applied` with its result, or `rejected` with its PAY error.

        A command published on Kafka is unknown here (404 PAY008) until the ledger has
        applied or rejected it.
        """
        reply = await self._request("GET", f"/payment/commands/{command_id}")
        return _parse(CommandStatusRead, reply)

    # Privileged writes

    async def grant(
        self,
        user_id: str,
        credits: int,
        reason: str,
        *,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReply:
        """Goodwill or adjustment credits (admin)."""
        body = _request_body(GrantRequest, user_id=user_id, credits=credits, reason=reason,
                             expires_at=expires_at)
        return await self._write("/payment/credits/grant", body, idempotency_key)

    async def refund(
        self,
        user_id: str,
        transaction_id: uuid.UUID,
        reason: str,
        *,
        credits: int | None = None,
        amount: int | None = None,
        idempotency_key: str | None = None,
    ) -> WriteReply:
        """Credits back for a CREDIT_USAGE transaction, or money back (minor units, through
        Stripe) for a CREDIT_PURCHASE (service or admin)."""
        body = _request_body(RefundRequest, user_id=user_id, transaction_id=transaction_id,
                             reason=reason, credits=credits, amount=amount)
        return await self._write("/payment/credits/refund", body, idempotency_key)

    async def transfer(
        self, from_user_id: str, to_user_id: str, credits: int, reason: str,
        *, idempotency_key: str | None = None,
    ) -> WriteReply:
        """Move credits between users (admin)."""
        body = _request_body(TransferRequest, from_user_id=from_user_id, to_user_id=to_user_id,
                             credits=credits, reason=reason)
        return await self._write("/payment/credits/transfer", body, idempotency_key)

    async def submit(self, command: CommandEnvelope, *, idempotency_key: str | None = None) -> WriteReply:
        """Any command the caller's role may send (`POST /payment/commands/`); its `id`
        stays its idempotency key in the ledger (`POST /payment/commands`)."""
        body = command.model_dump(mode="json")
        return await self._write("/payment/commands", body, idempotency_key)

    # Contract

    async def check_contract(self) -> ContractCheck:
        """Compares the JSON Schemas the service serves (`/payment/schemas`) with this
        client's copy. Raises SchemaVersionMismatch when the service speaks another
        `schemaVersion` than this client; otherwise reports what differs."""
        served = (await self._request("GET", "/payment/schemas")).json()
        differing: list[str] = []
        missing: list[str] = []
        for group, models in (("commands", COMMAND_MODELS), ("events", EVENT_MODELS)):
            for model in models:
                ours = model.model_json_schema(by_alias=True)
                name = ours["properties"]["type"].get("const") or model.__name__
                theirs = served.get(group, {}).get(name)
                if theirs is None:
                    missing.append(name)
                    continue
                version = theirs.get("properties", {}).get("schemaVersion", {})
                if version.get("const", SCHEMA_VERSION) != SCHEMA_VERSION:
                    raise SchemaVersionMismatch(
                        f"the service speaks schemaVersion {version.get('const')} for {name}; "
                        f"this client speaks {SCHEMA_VERSION}"
                    )
                if theirs != ours:
                    differing.append(name)
        return ContractCheck(SCHEMA_VERSION, tuple(differing), tuple(missing))

    # Transport

    async def _write(self, path: str, body: Mapping[str, Any], key: str | None) -> WriteReply:
        headers = {"Idempotency-Key": key or str(uuid.uuid4())}
        reply = await self._request("POST", path, json=body, headers=headers)
        if reply.status_code == 202:
            return _parse(CommandPendingRead, reply)
        return _parse(CommandAppliedRead, reply)

    async def _request(
        self,
        method: Method,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call, retried with the same headers (the same Idempotency-Key) on a dropped
        connection or an answer that says to retry; every other error is raised."""
        delay = 0.1
        for attempt in range(1, self._attempts + 1):
            sent = {**(headers or {}), "Authorization": f"Bearer {await self._bearer()}"}
            try:
                reply = await self._client.request(method, path, params=params, json=json,
                                                   headers=sent)
            except httpx.TransportError:
                if attempt == self._attempts:
                    raise
            else:
                if reply.status_code < 400:
                    return reply
                error = _error(reply)
                if error.code not in _RETRIED_CODES or attempt == self._attempts:
                    raise error
                delay = max(delay, error.retry_after or 0.0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _bearer(self) -> str:
        if isinstance(self._token, str):
            return self._token
        token = self._token()
        return token if isinstance(token, str) else await token


def _user(user_id: str | None) -> dict[str, str]:
    return {"userId": user_id} if user_id else {}


def _request_body(model: type[BaseModel], **fields: Any) -> dict[str, Any]:
    """The request as the service's model validates it, refused here when it would be
    refused there (nothing sent)."""
    try:
        built = model.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as error:
        raise InvalidCommand(str(error)) from error
    return built.model_dump(mode="json", exclude_none=True)


def _parse(model: type[Model], reply: httpx.Response) -> Model:
    return model.model_validate_json(reply.content)


def _error(reply: httpx.Response) -> PaymentApiError:
    try:
        body = reply.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    retry_after: float | None = None
    try:
        retry_after = float(reply.headers.get("Retry-After", ""))
    except ValueError:
        retry_after = None
    return PaymentApiError(
        reply.status_code,
        str(body.get("code") or f"HTTP{reply.status_code}"),
        str(body.get("message") or reply.reason_phrase),
        body.get("details") if isinstance(body.get("details"), dict) else None,
        retry_after,
    )
