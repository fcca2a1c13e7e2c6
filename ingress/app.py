"""The Litestar ingress: HTTP API, docs and the WebSocket on PAYMENT_SERVICE_PORT; metrics on
INGRESS_METRICS_PORT (ingress.metrics_server)."""

import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.middleware import ASGIMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import PluginProtocol
from litestar.plugins.pydantic import PydanticPlugin
from litestar.types import ASGIApp, Receive, Scope, Send

from ingress.auth import BEARER_SCHEME
from ingress.controllers.admin_actions import AdminActionsController
from ingress.controllers.admin_session import AdminSessionController
from ingress.controllers.commands import CommandsController
from ingress.controllers.config import ConfigController
from ingress.controllers.console import ConsoleController
from ingress.controllers.credits import CreditsController
from ingress.controllers.dashboard import DashboardController
from ingress.controllers.docs import DocsController
from ingress.controllers.fraud import FraudFlagsController
from ingress.controllers.health import HealthController
from ingress.controllers.live import balance_socket
from ingress.controllers.memberships import MembershipsController
from ingress.controllers.packs import CreditPacksController, ProductsController
from ingress.controllers.promos import PromoCodesController
from ingress.controllers.reports import ReportsController
from ingress.controllers.support import SupportController
from ingress.controllers.webhooks import StripeWebhookController
from ingress.errors import ERROR_TABLE, EXCEPTION_HANDLERS
from ingress.metrics_server import metrics_listener
from ingress.openapi_schemas import FaithfulJsonRenderPlugin
from ingress.rate_limits import RateLimits
from ingress.resources import Resources
from ingress.token_verifier import TokenVerifier
from services.metrics import HTTP_LATENCY, HTTP_REQUESTS
from services.settings import Settings, get_settings
from services.tracing import tracing_enabled

MAX_BODY = 64 * 1024
BEARER_DESCRIPTION = (
    "JWT with `sub`, `roles`, `aud` = PAYMENT_JWT_AUDIENCE, `iss` = PAYMENT_JWT_ISSUER, "
    "`iat` and `exp` (at most PAYMENT_JWT_MAX_LIFETIME_SECONDS apart), signed with one of "
    "PAYMENT_JWT_ALGORITHMS."
)


class RequestMetrics(ASGIMiddleware):
    """Counts and times requests by route template (not raw path: bounded labels)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        status = {"code": 500}

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await next_app(scope, receive, capture)
        finally:
            handler = scope.get("route_handler")
            route = "|".join(sorted(handler.paths)) if handler is not None else "unmatched"
            method = scope.get("method", "WS")
            HTTP_REQUESTS.labels(method=method, route=route, status=str(status["code"])).inc()
            HTTP_LATENCY.labels(method=method, route=route).observe(time.perf_counter() - started)


def tracing_plugins() -> list[PluginProtocol]:
    """A span per request (Litestar's OpenTelemetry plugin), continuing the caller's
    `traceparent`, when tracing is on; nothing otherwise. Probes are not traced."""
    if not tracing_enabled():
        return []
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    return [OpenTelemetryPlugin(OpenTelemetryConfig(
        exclude=["/payment/health", "/payment/ready"], exclude_spans=["receive", "send"],
    ))]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.resources = await Resources.open(settings)
        # Everything loaded so far (modules, the app, the pools: ~190k objects) lives as
        # long as the process: out of the collector's sight, a full collection no longer
        # walks it. Walking it stalled every socket's live balance by 0.5-1 s under load
        # (docs/benchmarks.md, `make bench-sockets`).
        gc.freeze()
        try:
            with metrics_listener(settings):
                yield
        finally:
            await app.state.resources.close()

    return Litestar(
        route_handlers=[
            CreditsController,
            CommandsController,
            ConfigController,
            CreditPacksController,
            ProductsController,
            MembershipsController,
            FraudFlagsController,
            PromoCodesController,
            ReportsController,
            SupportController,
            AdminActionsController,
            StripeWebhookController,
            DocsController,
            DashboardController,
            ConsoleController,
            AdminSessionController,
            HealthController,
            balance_socket,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[RequestMetrics(), RateLimits()],
        plugins=[PydanticPlugin(prefer_alias=True), *tracing_plugins()],
        lifespan=[lifespan],
        state=State({"settings": settings, "tokens": TokenVerifier(settings)}),
        request_max_body_size=MAX_BODY,
        openapi_config=OpenAPIConfig(
            title="pika-payment",
            version="1.0.0",
            description="Payment and credits service of the Pika platform. Errors are "
            '`{"code": "PAY0xx", "message": ..., "details": ...}` with these codes:\n\n'
            + ERROR_TABLE,
            path="/payment",
            # Declared once here; each guarded route names it (ingress.auth.BEARER).
            components=Components(security_schemes={
                BEARER_SCHEME: SecurityScheme(type="http", scheme="bearer", bearer_format="JWT",
                                              description=BEARER_DESCRIPTION),
            }),
            render_plugins=[FaithfulJsonRenderPlugin(), SwaggerRenderPlugin(path="/docs")],
        ),
        logging_config=None,  # ops.logs configures JSON lines for every process
        debug=False,
    )
