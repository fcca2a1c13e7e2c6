"""How hard the suite pushes: the full plan (`make faults`) and the short one (`make test`)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """How hard each scenario pushes; the short plan keeps `make test` under ~90 s."""

    rate: int  # commands per second, all scenarios
    users: int  # per scenario (fresh users, so balances start at zero)
    min_load: float  # seconds of load at least, faults or not
    worker_kills: int
    pg_restarts: int
    relay_kills: int
    quiesce_timeout: float


FULL = Plan(rate=500, users=200, min_load=20.0, worker_kills=10, pg_restarts=2, relay_kills=5,
            quiesce_timeout=180.0)
SHORT = Plan(rate=400, users=200, min_load=5.0, worker_kills=3, pg_restarts=1, relay_kills=2,
             quiesce_timeout=90.0)
