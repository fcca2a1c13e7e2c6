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


async def settle_hold(
    conn: AsyncConnection, hold_id: uuid.UUID, status: str, transaction_id: uuid.UUID
) -> None:
    await conn.execute(SETTLE_HOLD, {"status": status, "tx": transaction_id, "id": hold_id})
