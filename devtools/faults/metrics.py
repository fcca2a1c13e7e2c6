"""Reading a child's Prometheus counters while it runs."""

import asyncio
import contextlib


async def scrape_metrics(port: int) -> dict[str, float]:
    """Sum every sample of each metric family on a child's /metrics, by plain HTTP/1.0.

    Raw asyncio streams rather than a thread: the suite stays single-threaded.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    try:
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 2.0)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    body = data.partition(b"\r\n\r\n")[2].decode(errors="replace")
    sums: dict[str, float] = {}
    for line in body.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            sums[name] = sums.get(name, 0.0) + float(value)
    return sums
