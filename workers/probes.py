"""The one HTTP listener of a worker, relay or notify process: /health, /ready, /metrics.

These processes serve no HTTP otherwise, yet the kubelet must know whether they live
and are ready, and Prometheus must scrape them. A tiny asyncio server on the process's
own event loop does both with no new dependency and no thread: /health answering at
all proves the loop turns (a blocked loop fails the liveness probe), and /ready runs
the process's own checks (a consumer that joined its group, a database that answers).

It listens on METRICS_HOST:METRICS_PORT (127.0.0.1 and off by default; a pod sets
0.0.0.0 and a port). HTTP/1.0-style: one GET per connection, then close; anything
else is refused, so a scraper or probe cannot hold the loop with a slow request.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger("pika.probes")

# {check name: "ok" | "<why not>"}; ready when every value is "ok".
ReadyCheck = Callable[[], Awaitable[dict[str, str]]]

READ_TIMEOUT_SECONDS = 5.0
CHECK_TIMEOUT_SECONDS = 3.0
MAX_HEADER_LINES = 100
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}


class ProbeServer:
    """Serves the probes and the metrics of this process while it runs."""

    def __init__(self, host: str, port: int, ready: ReadyCheck) -> None:
        self.host = host
        self.port = port
        self._ready = ready
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind now: a port that cannot be bound stops the process at start, loudly."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        log.info("probes and metrics on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body = await asyncio.wait_for(
                self._answer(reader), READ_TIMEOUT_SECONDS + CHECK_TIMEOUT_SECONDS
            )
            writer.write(
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError) as error:
            # A slow, broken or oversized request gets no answer: the kubelet and Prometheus
            # retry, and nothing else is meant to call this port.
            log.debug("probe request dropped: %s", type(error).__name__)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes]:
        request_line = (await reader.readline()).decode("latin-1").split()
        for _ in range(MAX_HEADER_LINES):
            if (await reader.readline()) in (b"\r\n", b"\n", b""):
                break
        if len(request_line) != 3:
            return _json(400, {"status": "bad request"})
        method, target, _version = request_line
        if method not in ("GET", "HEAD"):
            return _json(405, {"status": "method not allowed"})
        path = target.split("?", 1)[0]
        if path == "/health":
            return _json(200, {"status": "ok"})
        if path == "/ready":
            return await self._readiness()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
        return _json(404, {"status": "not found"})

    async def _readiness(self) -> tuple[int, str, bytes]:
        try:
            checks = await asyncio.wait_for(self._ready(), CHECK_TIMEOUT_SECONDS)
        except Exception as error:  # the check itself failing means not ready
            checks = {"ready": f"unavailable: {type(error).__name__}"}
        ok = all(value == "ok" for value in checks.values())
        return _json(200 if ok else 503, {"status": "ok" if ok else "unavailable",
                                          "checks": checks})


def _json(status: int, body: dict[str, object]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()
