"""The rules evaluated inside the purchase and membership handlers, on their transaction."""

from datetime import timedelta
from typing import Any

from schemas.commands import CommandEnvelope
from schemas.events import EventEnvelope
from services.fraud.flags import raise_flag
from services.fraud.rules import payment_failures, promo_abuse, promo_over_limit, purchase_velocity
from services.fraud.store import COUNT_PURCHASES, OVER_LIMIT, PROMO_SOURCE
from services.ledger.context import LedgerContext

# A late redemption: its reservation had been released (a failed payment) or had lapsed
# before the payment succeeded, so no limit was checked for it.


async def _count(ctx: LedgerContext, user_id: str, statuses: list[str], minutes: int) -> int:
    since = ctx.now - timedelta(minutes=minutes)
    params = {"u": user_id, "statuses": statuses, "since": since}
    return int(await ctx.conn.scalar(COUNT_PURCHASES, params) or 0)


async def after_paid_purchase(
    ctx: LedgerContext, command: CommandEnvelope, purchase: dict[str, Any]
) -> list[EventEnvelope]:
    window = ctx.settings.fraud_purchase_window_minutes
    paid = await _count(ctx, command.user_id, ["succeeded", "refunded"], window)
    verdict = purchase_velocity(paid, ctx.settings.fraud_max_purchases_per_window, window)
    if verdict is None:
        return []
    return await raise_flag(ctx, command, verdict, purchase_id=purchase["id"],
                            payment_intent_id=purchase["payment_intent_id"])


async def after_failed_payment(
    ctx: LedgerContext, command: CommandEnvelope, attempts: int = 0, **link: Any
) -> list[EventEnvelope]:
    """Failed purchases in the window, plus the attempts of a failing renewal."""
    window = ctx.settings.fraud_failure_window_minutes
    failures = await _count(ctx, command.user_id, ["failed"], window) + attempts
    verdict = payment_failures(failures, ctx.settings.fraud_max_payment_failures, window)
    if verdict is None:
        return []
    return await raise_flag(ctx, command, verdict, **link)


async def after_promo_redeemed(
    ctx: LedgerContext, command: CommandEnvelope, reservation_id: Any
) -> list[EventEnvelope]:
    """A late redemption past the code's limits; many accounts redeeming one code from one
    client address (promo farming)."""
    events: list[EventEnvelope] = []
    late = (await ctx.conn.execute(OVER_LIMIT, {"id": reservation_id})).first()
    if late is not None:
        verdict = promo_over_limit(late.code, int(late.uses), late.usage_limit,
                                   int(late.user_uses), late.per_user_limit)
        if verdict:
            events += await raise_flag(ctx, command, verdict)
    window = ctx.settings.fraud_promo_window_minutes
    since = ctx.now - timedelta(minutes=window)
    row = (await ctx.conn.execute(PROMO_SOURCE, {"id": reservation_id, "since": since})).first()
    if row is None or not row.source:
        return events
    verdict = promo_abuse(int(row.accounts), ctx.settings.fraud_max_promo_accounts_per_source,
                          row.code, row.source)
    return events + (await raise_flag(ctx, command, verdict) if verdict else [])
