"""How many round trips the ingress makes to Postgres, by kind (a Prometheus counter).

`payment_db_round_trips_total{kind}` (services.metrics): `statement` (SQL the use cases run),
`begin`, `commit`, `rollback`, `ping` (the pool's pre-ping at checkout) and `listen`
(the reply listener's own); the read pool (services.db.ReadPool) counts its statements
itself. `make bench-http` divides them by the requests of a phase
("queries per request"); in production they show what a route costs the database.
Counted from SQLAlchemy's engine events, so the request path does not change.
"""

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from services.metrics import DB_ROUND_TRIPS

_STATEMENT = DB_ROUND_TRIPS.labels(kind="statement")
_BEGIN = DB_ROUND_TRIPS.labels(kind="begin")
_COMMIT = DB_ROUND_TRIPS.labels(kind="commit")
_ROLLBACK = DB_ROUND_TRIPS.labels(kind="rollback")
_PING = DB_ROUND_TRIPS.labels(kind="ping")
LISTEN = DB_ROUND_TRIPS.labels(kind="listen")


def count_round_trips(engine: AsyncEngine) -> None:
    """Count `engine`'s round trips from now on."""
    sync = engine.sync_engine
    pings = sync.pool._pre_ping

    def statement(*_: Any) -> None:
        _STATEMENT.inc()

    event.listen(sync, "before_cursor_execute", statement)
    event.listen(sync, "begin", lambda *_: _BEGIN.inc())
    event.listen(sync, "commit", lambda *_: _COMMIT.inc())
    event.listen(sync, "rollback", lambda *_: _ROLLBACK.inc())
    if pings:
        event.listen(sync.pool, "checkout", lambda *_: _PING.inc())
