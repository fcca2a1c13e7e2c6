"""Every error leaves the ingress as `{"code", "message", "details"}` (DESIGN.md §5)."""

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

from services.errors import (
    Forbidden,
    NotFound,
    PaymentError,
    Unauthorized,
    ValidationFailed,
)

log = logging.getLogger("pika.ingress")


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
