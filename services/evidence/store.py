"""SQL of `command_evidence`: recorded by trusted producers, read by the ledger worker."""

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncConnection

from schemas.commands import CommandEnvelope, command_fingerprint
from services.evidence.zones import Evidence, RecordedEvidence, needs_evidence

RECORD = text(
    "INSERT INTO command_evidence "
    "(command_id, command_type, user_id, fingerprint, kind, reference, subject) "
    "VALUES (:id, :type, :user, :fingerprint, :kind, :reference, :subject) "
    "ON CONFLICT (command_id) DO NOTHING"
)
# The same insert for a plain asyncpg connection (the fault suite's, which must survive
# Postgres restarts): one array per column of `evidence_rows`.
RECORD_COLUMNS = ("id", "type", "user", "fingerprint", "kind", "reference", "subject")
RECORD_ARRAYS = (
    "INSERT INTO command_evidence "
    "(command_id, command_type, user_id, fingerprint, kind, reference, subject) "
    "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::text[]) ON CONFLICT (command_id) DO NOTHING"
)
FIND = text(
    "SELECT command_id, command_type, user_id, fingerprint, kind FROM command_evidence "
    "WHERE command_id = ANY(:ids)"
).bindparams(bindparam("ids", type_=ARRAY(UUID(as_uuid=True))))


async def record_evidence(
    conn: AsyncConnection, entries: Iterable[tuple[CommandEnvelope, Evidence]]
) -> None:
    """Record what each payment-zone command rests on (public-zone ones need nothing).

    The first record of an id stays: evidence is append-only, so a later command that
    reuses the id with another meaning finds evidence that does not fit it.
    """
    rows = evidence_rows(entries)
    if rows:
        await conn.execute(RECORD, rows)


def evidence_rows(entries: Iterable[tuple[CommandEnvelope, Evidence]]) -> list[dict[str, Any]]:
    """Rows of `command_evidence` for the payment-zone commands among `entries`."""
    return [
        {
            "id": command.id,
            "type": command.type,  # type: ignore[attr-defined]
            "user": command.user_id,
            "fingerprint": command_fingerprint(command),
            "kind": evidence.kind,
            "reference": evidence.reference[:255],
            "subject": evidence.subject[:255],
        }
        for command, evidence in entries
        if needs_evidence(command.type)  # type: ignore[attr-defined]
    ]


async def recorded_evidence(
    conn: AsyncConnection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RecordedEvidence]:
    if not ids:
        return {}
    rows = (await conn.execute(FIND, {"ids": list(ids)})).all()
    return {
        row.command_id: RecordedEvidence(row.command_type, row.user_id, row.fingerprint, row.kind)
        for row in rows
    }
