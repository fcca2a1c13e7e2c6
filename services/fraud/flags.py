"""Raising a fraud flag: a `fraud_flags` row, `fraud.flagged`, and for a high one a freeze.

A high-severity flag freezes the user's unspent *purchased* credits (a hold over their
PURCHASED batches, reference `fraud:<flag id>`) until an admin resolves it: cleared
releases them, confirmed takes them back. Promotional and membership credits stay
spendable: the money at risk is the purchases'.
"""

import json
import uuid

from schemas.commands import CommandEnvelope
from schemas.events import EventEnvelope, FraudFlagged, FraudFlagPayload
from services.fraud.rules import Verdict
from services.fraud.store import INSERT_FLAG, MARK_FROZEN, PURCHASED_BATCHES
from services.ledger import account_store, batch_store
from services.ledger.context import LedgerContext
from services.ledger.events import envelope_of
from services.ledger.handlers.freeze import freeze_batches


def reference_of(flag_id: uuid.UUID) -> str:
    return f"fraud:{flag_id}"


async def raise_flag(
    ctx: LedgerContext,
    command: CommandEnvelope,
    verdict: Verdict,
    *,
    purchase_id: uuid.UUID | None = None,
    payment_intent_id: str | None = None,
    shortfall: int = 0,
    freeze: bool | None = None,
    frozen: int = 0,
    hold_id: uuid.UUID | None = None,
) -> list[EventEnvelope]:
    """Record the verdict once per open (user, rule, subject); [] when already flagged.

    `freeze` defaults to the verdict being high; a caller that froze credits itself (a
    dispute) passes `freeze=False` with what it froze.
    """
    flag_id = uuid.uuid4()
    created = await ctx.conn.scalar(
        INSERT_FLAG,
        {"id": flag_id, "u": command.user_id, "rule": verdict.rule, "subject": verdict.subject,
         "severity": verdict.severity, "details": json.dumps(verdict.details),
         "command": command.id},
    )
    if created is None:
        return []
    events: list[EventEnvelope] = []
    if freeze if freeze is not None else verdict.severity == "high":
        account = (await account_store.lock_accounts(ctx.conn, [command.user_id]))[command.user_id]
        rows = await ctx.conn.execute(PURCHASED_BATCHES, {"u": command.user_id})
        batches = [batch_store.OpenBatch(r.id, r.remaining, r.expires_at, r.source) for r in rows]
        hold, events = await freeze_batches(
            ctx, command, account, batches, reference=reference_of(flag_id),
            days=ctx.settings.fraud_hold_days, metadata={"fraudFlagId": str(flag_id)},
        )
        if hold is not None:
            frozen, hold_id = hold.credits, hold.id
    if hold_id is not None:
        await ctx.conn.execute(MARK_FROZEN, {"hold": hold_id, "n": frozen, "id": flag_id})
    events.append(FraudFlagged(**envelope_of(command), payload=FraudFlagPayload(
        reason=verdict.rule, severity=verdict.severity, flag_id=flag_id, purchase_id=purchase_id,
        payment_intent_id=payment_intent_id, shortfall_credits=shortfall, frozen_credits=frozen,
        details=verdict.details,
    )))
    return events
