"""Liveness and readiness. Metrics are served on their own port (ingress.metrics_server)."""

from typing import Any

from litestar import Controller, Request, Response, get

from ingress.deps import resources_of
from ingress.readiness import verdict


class HealthController(Controller):
    tags = ["health"]

    @get("/payment/health", operation_id="health")
    async def health(self) -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @get("/payment/ready", operation_id="ready")
    async def ready(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """Readiness: Postgres and Kafka answer (503 naming the failing ones otherwise);
        Redis down only degrades (200, `"redis": "down"`): reads work without it.

        Checked at most once a second per replica (ingress.readiness): the route is
        public and unlimited, so a flood must not become a flood on the backends.
        """
        res = resources_of(request)
        status, body = verdict(await res.readiness.checks(res))
        return Response(body, status_code=status)
