"""Every error leaves the ingress as `{"code", "message", "details"}` (docs/api.md, "Errors")."""

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.openapi import ResponseSpec

from schemas.api import ErrorBody
from services.errors import (
    ERROR_CATALOGUE,
    Forbidden,
    NotFound,
    PaymentError,
    Unauthorized,
    ValidationFailed,
)

log = logging.getLogger("pika.ingress")


def _described(status: int) -> str:
    """What an error response of `status` may carry: each PAY code of the catalogue with it."""
    return " / ".join(
        f"{code} {entry.title}: {entry.description}"
        for code, entry in ERROR_CATALOGUE.items()
        if entry.status == status
    )


# The error responses a route documents in the OpenAPI document: always the PAY body,
# with the codes of that status read from the one catalogue (services.errors).
# (Litestar's own 400 schema, `{"status_code", "detail"}`, is not what the service sends.)
ERROR_DESCRIPTIONS = {
    status: _described(status) for status in sorted({e.status for e in ERROR_CATALOGUE.values()})
}
ERROR_TABLE = "\n".join([
    "| Code | Status | Title | Meaning |",
    "|---|---|---|---|",
    *(f"| {code} | {e.status} | {e.title} | {e.description} |" for code, e in ERROR_CATALOGUE.items()),
])
"""Every PAY code as a Markdown table, for the OpenAPI document's description."""
READ_ERRORS = (400, 422, 429)
AUTHED_ERRORS = (*READ_ERRORS, 401, 403)
WRITE_ERRORS = (*AUTHED_ERRORS, 409, 503)


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """`responses=` for a route handler: each status with the `{"code", ...}` body."""
    return {
        status: ResponseSpec(data_container=ErrorBody, description=ERROR_DESCRIPTIONS[status])
        for status in sorted(set(statuses))
    }


def error_response(error: PaymentError, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        content=error.as_body(),
        status_code=error.status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def on_payment_error(_: Request[Any, Any, Any], error: PaymentError) -> Response[Any]:
    if error.status >= 500:
        log.error("request failed: %s %s", error.code, error.message)
    return error_response(error)


def on_http_error(_: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    mapped: PaymentError
    if isinstance(error, ValidationException):
        problems = error.extra if isinstance(error.extra, list) else []
        mapped = ValidationFailed(
            "the request is not valid",
            errors=[
                {k: str(v)[:300] for k, v in p.items() if k in ("key", "message", "source")}
                for p in problems[:20]
                if isinstance(p, dict)
            ],
        )
    elif isinstance(error, NotAuthorizedException):
        mapped = Unauthorized(str(error.detail))
    elif isinstance(error, PermissionDeniedException):
        mapped = Forbidden(str(error.detail))
    elif isinstance(error, NotFoundException):
        mapped = NotFound("no such resource")
    elif isinstance(error, MethodNotAllowedException):
        return Response(
            content=ValidationFailed("method not allowed").as_body(),
            status_code=405,
            media_type=MediaType.JSON,
        )
    elif error.status_code == 400:
        # A body that is not JSON (or not decodable) is invalid input like any other.
        mapped = ValidationFailed(str(error.detail))
    elif error.status_code < 500:
        mapped = ValidationFailed(str(error.detail))
        return Response(
            content=mapped.as_body() | {"details": {"status": error.status_code}},
            status_code=error.status_code,
            media_type=MediaType.JSON,
            headers=error.headers,
        )
    else:
        mapped = PaymentError(str(error.detail))
    return error_response(mapped, error.headers)


def on_unexpected(_: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=error)
    return error_response(PaymentError("internal error; nothing was changed by this request"))


EXCEPTION_HANDLERS: dict[Any, Any] = {
    PaymentError: on_payment_error,
    HTTPException: on_http_error,
    Exception: on_unexpected,
}
