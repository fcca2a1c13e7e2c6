"""examples/notifier.py, run as its users run it (a process of its own), against the
test stack: each balance change is printed once although the real relay publishes the
user's events a second time."""

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
import uuid

from tests.conftest import ROOT
from tests.test_client_events import applied, charge, grant, republish, wait_repeated

LINE = re.compile(
    r"^balance user=(?P<user>\S+) available=(?P<available>-?\d+) held=(?P<held>-?\d+) "
    r"delta=(?P<delta>[+-]\d+) event=(?P<event>[0-9a-f-]{36})$"
)


class Notifier:
    """The example as a child process, its stdout lines collected as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def changes_of(self, user: str) -> list[dict[str, str]]:
        found = [LINE.match(line) for line in self.lines]
        return [match.groupdict() for match in found if match and match["user"] == user]

    async def wait_for(self, user: str, count: int, timeout: float = 45) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            changes = self.changes_of(user)
            if len(changes) >= count or self.process.returncode is not None or time.monotonic() > deadline:
                return changes
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.process.wait(), 20)
        await self.reader
        return code


async def start_notifier(settings) -> Notifier:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "NOTIFIER_GROUP_ID": f"example-notifier-test-{uuid.uuid4().hex[:10]}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("NOTIFIER_REDIS_URL", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "notifier.py"),
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )
    return Notifier(process)


async def test_the_example_notifier_prints_each_balance_change_once(
    settings, engine, worker, relay, events, producer, user_id
):
    notifier = await start_notifier(settings)
    try:
        await applied(producer, settings, engine, grant(user_id, 10), charge(user_id, 4, "booking-n"))
        assert len(await notifier.wait_for(user_id, 2)) == 2, notifier.lines[-5:]
        # The relay publishes the user's events again, as after a crash before mark-sent.
        await wait_repeated(events, user_id, await republish(settings, user_id))
        # A later change, behind the repeats in the user's partition: once it is printed,
        # the notifier has read the repeats.
        await applied(producer, settings, engine, grant(user_id, 1))
        printed = await notifier.wait_for(user_id, 3)
        await asyncio.sleep(0.5)  # a repeat printed late would show now
    finally:
        code = await notifier.stop()
    assert code == 0
    printed = notifier.changes_of(user_id)
    assert [(c["available"], c["held"], c["delta"]) for c in printed] == [
        ("10", "0", "+10"), ("6", "0", "-4"), ("7", "0", "+1")
    ]
    assert len({c["event"] for c in printed}) == 3
    on_topic = [e["id"] for e in events.events
                if e.get("userId") == user_id and e["type"] == "balance.changed"]
    assert sorted(on_topic.count(c["event"]) for c in printed) == [1, 2, 2]  # the first two, twice
