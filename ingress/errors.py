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
    Forbidden,
    NotFound,
    PaymentError,
    Unauthorized,
    ValidationFailed,
)

log = logging.getLogger("pika.ingress")

# The error responses a route documents in the OpenAPI document: always the PAY body.
# (Litestar's own 400 schema, `{"status_code", "detail"}`, is not what the service sends.)
ERROR_DESCRIPTIONS = {
    400: "Bad request (PAY error body)",
    401: "PAY009: authentication required, or the token is invalid or expired",
    402: "PAY001 insufficient credits / PAY002 payment failed",
    403: "PAY010: the caller's role or account does not allow this",
    404: "PAY008: not found (or not yours)",
    409: "PAY004 / PAY013 / PAY014: conflicts with the current state or a request in flight",
    422: "PAY007 request not valid / PAY006, PAY012, PAY016",
    429: "PAY011: too many requests (see Retry-After)",
    503: "PAY015: a dependency is unavailable; nothing was changed",
}
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
            content={"code": "PAY007", "message": "method not allowed", "details": {}},
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
