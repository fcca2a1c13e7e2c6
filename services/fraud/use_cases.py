"""Fraud review's synchronous use cases (reads; resolving is a command to the worker).

The HTTP controllers call these instead of opening connections; the SQL stays in
`services.fraud.queries`.
"""

import uuid
from typing import Any

from services.db import UnitOfWork
from services.fraud import queries


async def list_fraud_flags(
    uow: UnitOfWork, *, status: str | None, user_id: str | None, limit: int, cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first: one page and the cursor of the next (None on the last page)."""
    async with uow.read() as conn:
        return await queries.list_flags(conn, status=status, user_id=user_id, limit=limit,
                                        cursor=cursor)


async def get_fraud_flag(uow: UnitOfWork, flag_id: uuid.UUID) -> dict[str, Any]:
    """The flag; PAY008 when there is none."""
    async with uow.read() as conn:
        return await queries.get_flag(conn, flag_id)
