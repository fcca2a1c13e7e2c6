"""Waiting on a condition that only another process can make true."""

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_for(predicate: Callable[[], Awaitable[bool]], seconds: float) -> bool:
    """Poll `predicate` every 0.1 s; False if it did not hold within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False
