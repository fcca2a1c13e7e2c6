"""The ledger's synchronous reads for HTTP and the live socket: one statement each, on the
read pool where the caller has one (services.db.ReadPool).

Writes never happen here: they are commands applied by the ledger worker. The SQL
stays in `services.ledger.queries`.
"""

import uuid
from datetime import datetime
from typing import Any

from services.db import UnitOfWork
from services.ledger import queries


async def read_balance(uow: UnitOfWork, user_id: str) -> dict[str, Any]:
    """Available, held and total credits, with open batches in the order they are spent."""
    async with uow.reader() as source:
        return await queries.balance(source, user_id)


async def list_history(
    uow: UnitOfWork,
    user_id: str,
    *,
    limit: int,
    cursor: str | None,
    types: list[str] | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Ledger transactions, newest first, and the cursor of the next page."""
    async with uow.reader() as source:
        return await queries.history(source, user_id, limit=limit, cursor=cursor, types=types,
                                     since=since, until=until)


async def find_command_status(uow: UnitOfWork, command_id: uuid.UUID) -> dict[str, Any] | None:
    """A command's stored result, or None while it has none."""
    async with uow.reader() as source:
        return await queries.command_status(source, command_id)
