"""Recording evidence as a use case of its own: one transaction, committed before the
command it backs is published (the worker checks the command against it)."""

from schemas.commands import CommandEnvelope
from services.db import UnitOfWork
from services.evidence.store import record_evidence
from services.evidence.zones import Evidence


async def record_command_evidence(uow: UnitOfWork, command: CommandEnvelope, evidence: Evidence) -> None:
    """Record what `command` rests on; the first record of its id stays."""
    async with uow.begin() as conn:
        await record_evidence(conn, [(command, evidence)])
