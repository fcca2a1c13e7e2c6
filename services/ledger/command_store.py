"""`processed_commands`: each command id claimed once, then its stored outcome.

Inserting the row first, with ON CONFLICT DO NOTHING, makes a second transaction
holding the same id (a copy on another partition, a batch redelivered during a
rebalance) wait on the unique index until the first commits, then skip it, instead
of applying it and failing the whole batch on commit. Ids are claimed in sorted
order so two claimers cannot deadlock on each other. The placeholder result is
replaced by `record_processed` before commit, so no other transaction ever sees it.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.ledger.journal_store import as_json

CLAIM_COMMANDS = text(
    """
    INSERT INTO processed_commands (command_id, type, user_id, status, result,
                                    fingerprint)
    SELECT id, type, user_id, 'applied', '{}'::jsonb, fingerprint
      FROM unnest(CAST(:id AS uuid[]), CAST(:type AS text[]), CAST(:user_id AS text[]),
                  CAST(:fingerprint AS text[]))
           WITH ORDINALITY AS c(id, type, user_id, fingerprint, n)
     ORDER BY n
    ON CONFLICT (command_id) DO NOTHING
    RETURNING command_id
    """
)
CLAIMS_OF = text(
    "SELECT command_id, type, user_id, fingerprint FROM processed_commands "
    "WHERE command_id = ANY(CAST(:ids AS uuid[]))"
)
RECORD_PROCESSED = text(
    """
    UPDATE processed_commands p
       SET status = d.status, error_code = d.code, result = d.result
      FROM unnest(CAST(:id AS uuid[]), CAST(:status AS text[]), CAST(:code AS text[]),
                  CAST(:result AS jsonb[])) AS d(id, status, code, result)
     WHERE p.command_id = d.id
    """
)

Claim = tuple[uuid.UUID, str, str, str | None]
"""(command id, type, user id, fingerprint); rows written without one have None."""


def claim_rows(commands: Sequence[Claim]) -> dict[str, Any]:
    """CLAIM_COMMANDS' parameters, in command id order."""
    ordered = sorted(commands, key=lambda c: c[0])
    return {
        "id": [c[0] for c in ordered],
        "type": [c[1] for c in ordered],
        "user_id": [c[2] for c in ordered],
        "fingerprint": [c[3] for c in ordered],
    }


async def claim_commands(conn: AsyncConnection, commands: Sequence[Claim]) -> set[uuid.UUID]:
    """Claim (command id, type, user id, fingerprint) rows; returns the ids this
    transaction owns."""
    if not commands:
        return set()
    rows = await conn.execute(CLAIM_COMMANDS, claim_rows(commands))
    return {row[0] for row in rows}


async def claims_of(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, str, str | None]]:
    """(type, user id, fingerprint) each of these command ids was first used for."""
    if not ids:
        return {}
    rows = await conn.execute(CLAIMS_OF, {"ids": list(ids)})
    return {row.command_id: (row.type, row.user_id, row.fingerprint) for row in rows}


Processed = tuple[uuid.UUID, str, str | None, dict[str, Any]]
"""(command id, status, error code, result)."""


def processed_rows(rows: Sequence[Processed]) -> dict[str, Any]:
    """RECORD_PROCESSED' parameters."""
    return {
        "id": [r[0] for r in rows],
        "status": [r[1] for r in rows],
        "code": [r[2] for r in rows],
        "result": [as_json(r[3]) for r in rows],
    }


async def record_processed(conn: AsyncConnection, rows: Sequence[Processed]) -> None:
    """The outcomes of commands this transaction claimed."""
    if not rows:
        return
    await conn.execute(RECORD_PROCESSED, processed_rows(rows))
