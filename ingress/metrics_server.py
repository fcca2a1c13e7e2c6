"""The ingress's Prometheus metrics, on a port of their own (INGRESS_METRICS_PORT).

Metrics tell route names, error rates and volumes (reconnaissance for an attacker)
and each scrape costs CPU, so the public API port does not serve them: the Service
and the cluster's ingress expose only that port, and Prometheus scrapes the pod on
this one. It binds INGRESS_METRICS_HOST: 127.0.0.1 by default, 0.0.0.0 in the pod.
A port that cannot be bound stops the ingress at start, loudly.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

from services.settings import Settings


@contextmanager
def metrics_listener(settings: Settings) -> Iterator[None]:
    """Serve the process's registry while the app runs (nothing when the port is 0)."""
    if not settings.ingress_metrics_port:
        yield
        return
    server, thread = start_http_server(
        settings.ingress_metrics_port, addr=settings.ingress_metrics_host
    )
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
