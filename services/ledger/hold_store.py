"""The `holds` table: credits set aside by a booking (`credits.hold`) or frozen by a
dispute or a fraud flag. A user's holds change only while their account is locked."""

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger.models import Hold

HOLD_COLUMNS = "id, account_id, user_id, reference, credits, status, expires_at, transaction_id, kind"
INSERT_HOLD = text(
    """
    INSERT INTO holds (id, account_id, user_id, reference, credits, status,
                       expires_at, transaction_id, kind)
    VALUES (:id, :account, :user_id, :reference, :credits, 'open', :expires_at, :tx,
            :kind)
    """
)
# Open holds first, then the newest: a reference may have been held more than once.
HOLD_BY_ID = text(
    f"SELECT {HOLD_COLUMNS} FROM holds WHERE id = :hold_id AND user_id = :user_id "
    "ORDER BY (status = 'open') DESC, created_at DESC LIMIT 1 FOR UPDATE"
)
BOOKING_HOLD_BY_REFERENCE = text(
    f"SELECT {HOLD_COLUMNS} FROM holds "
    "WHERE user_id = :user_id AND reference = :reference AND kind = 'booking' "
    "ORDER BY (status = 'open') DESC, created_at DESC LIMIT 1 FOR UPDATE"
)
OPEN_FREEZES = text(
    f"SELECT {HOLD_COLUMNS} FROM holds WHERE user_id = :u AND reference = :r "
    "AND status = 'open' AND kind = 'freeze' ORDER BY created_at, id FOR UPDATE"
)
OPEN_HOLD_EXISTS = text(
    "SELECT 1 FROM holds WHERE user_id = :u AND reference = :r AND status = 'open' "
    "AND kind = 'booking'"
)
# Set-based forms for many users at once (holds of a round, each user at most once).
INSERT_HOLDS = text(
    """
    INSERT INTO holds (id, account_id, user_id, reference, credits, status,
                       expires_at, transaction_id, kind)
    SELECT id, account, user_id, reference, credits, 'open', expires_at, tx, kind
      FROM unnest(CAST(:id AS uuid[]), CAST(:account AS bigint[]), CAST(:user_id AS text[]),
                  CAST(:reference AS text[]), CAST(:credits AS bigint[]),
                  CAST(:expires_at AS timestamptz[]), CAST(:tx AS uuid[]), CAST(:kind AS text[]))
           AS h(id, account, user_id, reference, credits, expires_at, tx, kind)
    """
)
OPEN_HOLDS_AMONG = text(
    """
    SELECT DISTINCT h.user_id, h.reference FROM holds h
      JOIN unnest(CAST(:u AS text[]), CAST(:r AS text[])) AS q(user_id, reference)
        ON h.user_id = q.user_id AND h.reference = q.reference
     WHERE h.status = 'open' AND h.kind = 'booking'
    """
)
SETTLE_HOLD = text("UPDATE holds SET status = :status, settled_transaction_id = :tx WHERE id = :id")


async def insert_hold(conn: AsyncConnection, hold: Hold) -> None:
    await conn.execute(
        INSERT_HOLD,
        {
            "id": hold.id,
            "account": hold.account_id,
            "user_id": hold.user_id,
            "reference": hold.reference,
            "credits": hold.credits,
            "expires_at": hold.expires_at,
            "tx": hold.transaction_id,
            "kind": hold.kind,
        },
    )


async def find_hold(
    conn: AsyncConnection, user_id: str, hold_id: uuid.UUID | None, reference: str | None
) -> Hold | None:
    """The user's hold by id, or their open booking hold for a reference (newest first).

    By id it may be a freeze: the caller decides whether it may touch that kind.
    """
    params: dict[str, Any] = {"user_id": user_id}
    if hold_id is not None:
        statement, params["hold_id"] = HOLD_BY_ID, hold_id
    else:
        statement, params["reference"] = BOOKING_HOLD_BY_REFERENCE, reference
    found = (await conn.execute(statement, params)).first()
    return Hold(*found) if found else None


async def open_freezes(conn: AsyncConnection, user_id: str, reference: str) -> list[Hold]:
    """Every open freeze with this reference (a dispute may freeze several times)."""
    rows = await conn.execute(OPEN_FREEZES, {"u": user_id, "r": reference})
    return [Hold(*row) for row in rows]


async def open_hold_exists(conn: AsyncConnection, user_id: str, reference: str) -> bool:
    found = await conn.scalar(OPEN_HOLD_EXISTS, {"u": user_id, "r": reference})
    return found is not None


async def insert_holds(conn: AsyncConnection, holds: list[Hold]) -> None:
    """New open holds, one statement for all of them."""
    if not holds:
        return
    await conn.execute(
        INSERT_HOLDS,
        {
            "id": [h.id for h in holds],
            "account": [h.account_id for h in holds],
            "user_id": [h.user_id for h in holds],
            "reference": [h.reference for h in holds],
            "credits": [h.credits for h in holds],
            "expires_at": [h.expires_at for h in holds],
            "tx": [h.transaction_id for h in holds],
            "kind": [h.kind for h in holds],
        },
    )


async def open_holds_among(
    conn: AsyncConnection, wanted: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which (user id, reference) pairs already have an open booking hold."""
    if not wanted:
        return set()
    rows = await conn.execute(
        OPEN_HOLDS_AMONG, {"u": [w[0] for w in wanted], "r": [w[1] for w in wanted]}
    )
    return {(row.user_id, row.reference) for row in rows}


async def settle_hold(
    conn: AsyncConnection, hold_id: uuid.UUID, status: str, transaction_id: uuid.UUID
) -> None:
    await conn.execute(SETTLE_HOLD, {"status": status, "tx": transaction_id, "id": hold_id})
