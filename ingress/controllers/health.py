"""Liveness, readiness and metrics."""

import asyncio
from typing import Any

from litestar import Controller, MediaType, Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from ingress.deps import resources_of


class HealthController(Controller):
    tags = ["health"]

    @get("/payment/health", operation_id="health")
    async def health(self) -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @get("/payment/ready", operation_id="ready")
    async def ready(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """Readiness: Postgres, Redis and Kafka answer (503 with the failing ones otherwise)."""
        res = resources_of(request)

        async def postgres() -> None:
            async with res.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        async def redis() -> None:
            await res.redis.ping()

        async def kafka() -> None:
            await res.producer.client.fetch_all_metadata()

        checks = {"postgres": postgres, "redis": redis, "kafka": kafka}
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), 3)
                results[name] = "ok"
            except Exception as error:
                results[name] = f"unavailable: {type(error).__name__}"
        ok = all(v == "ok" for v in results.values())
        return Response({"status": "ok" if ok else "unavailable", "checks": results},
                        status_code=200 if ok else 503)

    @get("/metrics", media_type=MediaType.TEXT, operation_id="metrics", include_in_schema=False)
    async def metrics(self) -> Response[bytes]:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
