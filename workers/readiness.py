"""What "ready" means for the worker, relay and notify processes (workers.probes /ready).

* ledger worker and notify: their consumer has joined its group (it received an
  assignment, possibly empty: a replica beyond the partition count is idle but
  healthy, and a rolling update must not stall on it) and Postgres answers;
* relay: Postgres answers. Active (holding the advisory lock) or standby, it is
  ready: a standby is exactly what should take over.

Kafka itself is not checked by the relay: its producer reconnects on its own and the
outbox keeps every event until it is published, so a broker blip must not restart it.
"""

import asyncio

from aiokafka import ConsumerRebalanceListener, TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from services.db import ping_database
from workers.probes import ReadyCheck

CHECK_TIMEOUT_SECONDS = 2.0


class GroupMembership(ConsumerRebalanceListener):
    """Remembers whether the consumer has joined its group, and with how many partitions.

    Joined stays true through later rebalances: each one revokes then reassigns within
    the session timeout, and flapping readiness across every replica on each
    rebalance would only add noise.
    """

    def __init__(self) -> None:
        self.joined = False
        self.partitions = 0

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.partitions = 0

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.joined = True
        self.partitions = len(assigned)

    def check(self) -> str:
        return "ok" if self.joined else "unavailable: not joined to its consumer group yet"


async def database_check(engine: AsyncEngine) -> str:
    """"ok" when Postgres answers a trivial query within CHECK_TIMEOUT_SECONDS."""

    try:
        await asyncio.wait_for(ping_database(engine), CHECK_TIMEOUT_SECONDS)
    except Exception as error:  # any failure to answer is "not ready", not a crash
        return f"unavailable: {type(error).__name__}"
    return "ok"


def consumer_ready(membership: GroupMembership, engine: AsyncEngine) -> ReadyCheck:
    """The /ready check of a consuming process (ledger worker, notify)."""

    async def check() -> dict[str, str]:
        return {"consumer": membership.check(), "postgres": await database_check(engine)}

    return check


def database_ready(engine: AsyncEngine) -> ReadyCheck:
    """The /ready check of the relay."""

    async def check() -> dict[str, str]:
        return {"postgres": await database_check(engine)}

    return check
