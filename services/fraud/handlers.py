"""Ledger-worker handlers of fraud monitoring: cards seen, and admins' decisions.

The rules on purchases and failures run inside those handlers (`checks`); here are
the two commands of their own: a card that paid a purchase, and the resolution of a
flag (which may release or take back the credits a high flag froze).
"""

from typing import Any

from schemas.commands import RecordCard, ResolveFraudFlag
from schemas.events import FraudResolved, FraudResolvedPayload
from services.errors import NotFound
from services.fraud.flags import raise_flag, reference_of
from services.fraud.rules import shared_card
from services.fraud.store import CARD_ACCOUNTS, LOCK_FLAG, RESOLVE, SEE_CARD
from services.ledger import account_store, hold_store
from services.ledger.context import LedgerContext, Outcome
from services.ledger.events import envelope_of
from services.ledger.handlers.common import Handler, applied
from services.ledger.handlers.freeze import settle_freeze


async def record_card(ctx: LedgerContext, command: RecordCard) -> Outcome:
    """Remember who paid with this card; more accounts than allowed raise a high flag."""
    p = command.payload
    await ctx.conn.execute(SEE_CARD, {"f": p.fingerprint, "u": command.user_id})
    accounts = int(await ctx.conn.scalar(CARD_ACCOUNTS, {"f": p.fingerprint}) or 0)
    verdict = shared_card(accounts, ctx.settings.fraud_max_accounts_per_card, p.fingerprint)
    events = await raise_flag(ctx, command, verdict, payment_intent_id=p.payment_intent_id) if verdict else []
    result: dict[str, Any] = {"accounts": accounts, "flagged": bool(events)}
    if not events:
        result["quiet"] = True  # nothing to announce: reconcile expects no event
    return applied(command, result, events)


async def resolve_fraud_flag(ctx: LedgerContext, command: ResolveFraudFlag) -> Outcome:
    """Close a flag; a freeze of its own is released (cleared) or taken back (confirmed)."""
    p = command.payload
    row = (await ctx.conn.execute(LOCK_FLAG, {"id": p.flag_id})).mappings().first()
    if row is None or row["user_id"] != command.user_id:
        raise NotFound("no such fraud flag", flagId=str(p.flag_id))
    if row["status"] != "open":
        return applied(command, {"flagId": str(p.flag_id), "status": row["status"], "already": True}, [])
    events: list[Any] = []
    released = revoked = 0
    if row["hold_id"] is not None:
        account = (await account_store.lock_accounts(ctx.conn, [command.user_id]))[command.user_id]
        hold = await hold_store.find_hold(ctx.conn, command.user_id, row["hold_id"], None)
        # A dispute's hold is the bank's to settle; only a freeze of this flag is ours.
        if hold is not None and hold.status == "open" and hold.reference == reference_of(p.flag_id):
            confirmed = p.resolution == "confirmed"
            events += await settle_freeze(
                ctx, command, account, hold, take_back=confirmed, draft_type="ADJUSTMENT",
                system_code="adjustments", reason="fraud flag cleared",
                metadata={"fraudFlagId": str(p.flag_id), "resolution": p.resolution},
            )
            released, revoked = (0, hold.credits) if confirmed else (hold.credits, 0)
    await ctx.conn.execute(
        RESOLVE, {"status": p.resolution, "by": p.resolved_by, "note": p.note, "id": p.flag_id}
    )
    events.append(FraudResolved(
        **envelope_of(command),
        payload=FraudResolvedPayload(flag_id=p.flag_id, reason=row["rule"], resolution=p.resolution,
                                     released_credits=released, revoked_credits=revoked),
    ))
    return applied(
        command,
        {"flagId": str(p.flag_id), "status": p.resolution, "released": released, "revoked": revoked},
        events,
    )


HANDLERS: dict[str, Handler] = {
    "fraud.record_card": record_card,
    "fraud.resolve": resolve_fraud_flag,
}
