"""The support console's use cases: record an admin action with its command's evidence,
and read the audit trail (as JSON rows or CSV).

The HTTP controller builds each action's command and publishes it through the gateway;
`record_admin_action` is what the gateway runs before publishing, so the audit row and
the evidence are committed together, or neither is.
"""

from datetime import datetime
from typing import Any

from pydantic.alias_generators import to_camel

from schemas.commands import CommandEnvelope
from services.db import UnitOfWork
from services.evidence.store import record_evidence
from services.evidence.zones import Evidence
from services.reports.csv_export import to_csv
from services.support_actions import audit_store
from services.support_actions.models import AdminAction

CSV_COLUMNS = (
    "at", "admin", "action", "user_id", "reason", "command_id", "status", "error_code",
    "transaction_id", "transaction_type", "credits", "amount", "currency",
)


async def record_admin_action(
    uow: UnitOfWork, action: AdminAction, command: CommandEnvelope, evidence: Evidence | None
) -> None:
    """Append `action` and the command's evidence (None for a public-zone command such as
    a hold release, which needs none) in one transaction."""
    async with uow.begin() as conn:
        if evidence is not None:
            await record_evidence(conn, [(command, evidence)])
        await audit_store.record_action(conn, action, command)


def _audit_row(row: dict[str, Any]) -> dict[str, Any]:
    effects = row["effects"] or []
    return {
        "id": row["id"],
        "at": row["created_at"],
        "admin": row["admin_subject"],
        "action": row["action"],
        "user_id": row["user_id"],
        "reason": row["reason"],
        "command_id": row["command_id"],
        "command_type": row["command_type"],
        "request": row["request"],
        "status": row["status"] or "pending",
        "error_code": row["error_code"],
        "effect": effects[0] if effects else None,
        "effects": effects,
    }


async def list_admin_actions(
    uow: UnitOfWork,
    *,
    user_id: str | None = None,
    admin: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The audit trail, newest first: one page and the cursor of the next (None on the
    last). Each row: who, when, what, whose account, why, the command's status
    (pending until the ledger answers), its PAY code if rejected, and its ledger effect."""
    async with uow.read() as conn:
        rows, next_cursor = await audit_store.list_actions(
            conn, user_id=user_id, admin=admin, since=since, until=until, limit=limit,
            cursor=cursor,
        )
    return [_audit_row(r) for r in rows], next_cursor


def audit_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, the reports' writer (formula injection neutralised): one line
    per action, its first ledger transaction as the effect columns."""
    flat = []
    for row in rows:
        effect = row["effect"] or {}
        values = {
            **row,
            "id": None,
            "command_id": str(row["command_id"]),
            "transaction_id": effect.get("transactionId"),
            "transaction_type": effect.get("type"),
            "credits": effect.get("credits"),
            "amount": effect.get("amount"),
            "currency": effect.get("currency"),
        }
        flat.append({column: values[column] for column in CSV_COLUMNS})
    if not flat:  # the header alone: a spreadsheet still shows the columns
        return ",".join(to_camel(column) for column in CSV_COLUMNS) + "\r\n"
    return to_csv({"items": flat})
