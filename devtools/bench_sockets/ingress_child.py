"""The ingress under test: one `pika-payment ingress` process, as `make run` starts it.

It gets the bench's settings (database, broker, topics) on free ports, so the bench
never talks to a developer's running stack.
"""

import asyncio
import dataclasses

import httpx

from devtools.bench.children import Child, spawn, wait_started
from devtools.processes import free_port, wait_until_async
from services.settings import Settings


def spawn_ingress(settings: Settings, tag: str) -> tuple[Child, str]:
    """The child (its /metrics port is the ingress's own) and its base URL."""
    port, metrics_port = free_port(), free_port()
    configured = settings.model_copy(update={
        "payment_service_host": "127.0.0.1", "payment_service_port": port,
        "ingress_metrics_host": "127.0.0.1", "ingress_metrics_port": metrics_port,
    })
    child = spawn("ingress", configured, tag)
    return dataclasses.replace(child, metrics_port=metrics_port), f"http://127.0.0.1:{port}"


async def wait_ready(child: Child, url: str, seconds: float = 30) -> None:
    """Until /metrics answers and /payment/ready says Postgres and Kafka are there."""
    await wait_started(child, seconds)

    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"{url}/payment/ready")).status_code == 200
        except httpx.HTTPError:
            return False

    if not await wait_until_async(ready, seconds, process=child.process):
        raise RuntimeError(f"the ingress was not ready within {seconds:.0f}s; see {child.log}")
    await asyncio.sleep(1.0)  # its live-balance consumer joins the topic's log end meanwhile
