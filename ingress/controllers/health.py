"""Liveness and readiness. Metrics are served on their own port (ingress.metrics_server)."""

from typing import Any

from litestar import Controller, Request, Response, get

from ingress.deps import resources_of


class HealthController(Controller):
    tags = ["health"]

    @get("/payment/health", operation_id="health")
    async def health(self) -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @get("/payment/ready", operation_id="ready")
    async def ready(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """Readiness: Postgres, Redis and Kafka answer (503 with the failing ones otherwise).

        Checked at most once a second per replica (ingress.readiness): the route is
        public and unlimited, so a flood must not become a flood on the backends.
        """
        res = resources_of(request)
        results = await res.readiness.checks(res)
        ok = all(v == "ok" for v in results.values())
        return Response({"status": "ok" if ok else "unavailable", "checks": results},
                        status_code=200 if ok else 503)
