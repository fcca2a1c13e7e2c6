"""The worker's side of the trust zones: what it refuses to apply, whatever parsed.

Two checks, each a layer under the broker's ACLs:
1. A payment-zone command read from the public topic (`payment.commands`) is refused:
   platform services may publish only the public-zone commands.
2. A payment-zone command (from the internal topic) is applied only when its producer
   recorded evidence for exactly this command (`command_evidence`).
A refused command is dead-lettered with the reason and counted in
`payment_commands_refused_total`, which an operator alerts on: in a healthy system it
stays at zero.
"""

from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from schemas.commands import CommandEnvelope, command_fingerprint
from services.evidence.store import recorded_evidence
from services.evidence.zones import evidence_refusal, needs_evidence, refused_on_public_topic
from services.metrics import COMMANDS_REFUSED
from services.settings import Settings


@dataclass(frozen=True)
class Refusal:
    command: CommandEnvelope
    record: ConsumerRecord
    reason: str


async def refuse_untrusted(
    engine: AsyncEngine,
    settings: Settings,
    commands: list[tuple[CommandEnvelope, ConsumerRecord]],
) -> tuple[list[tuple[CommandEnvelope, ConsumerRecord]], list[Refusal]]:
    """Split parsed commands into those that may be applied (in their order: one user's
    commands must keep it) and those refused."""
    reasons: dict[int, tuple[str, str]] = {}  # index -> (metric reason, dead-letter reason)
    to_check: list[int] = []
    for index, (command, record) in enumerate(commands):
        kind = command.type  # type: ignore[attr-defined]
        reason = (
            refused_on_public_topic(kind, record.topic)
            if record.topic == settings.commands_topic else None
        )
        if reason:
            reasons[index] = ("public_topic", reason)
        elif needs_evidence(kind):
            to_check.append(index)
    if to_check:
        async with engine.connect() as conn:
            recorded = await recorded_evidence(conn, [commands[i][0].id for i in to_check])
        for index in to_check:
            command = commands[index][0]
            reason = evidence_refusal(
                command.type,  # type: ignore[attr-defined]
                command.user_id, command_fingerprint(command), recorded.get(command.id),
            )
            if reason:
                reasons[index] = ("evidence", reason)
    allowed = [pair for index, pair in enumerate(commands) if index not in reasons]
    refused = []
    for index, (metric_reason, reason) in sorted(reasons.items()):
        command, record = commands[index]
        COMMANDS_REFUSED.labels(type=command.type, reason=metric_reason).inc()  # type: ignore[attr-defined]
        refused.append(Refusal(command, record, reason))
    return allowed, refused
