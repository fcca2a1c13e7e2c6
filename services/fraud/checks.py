"""The rules evaluated inside the purchase and membership handlers, on their transaction."""

from datetime import timedelta
from typing import Any

from sqlalchemy import text

from schemas.commands import CommandEnvelope
from schemas.events import EventEnvelope
from services.fraud.flags import raise_flag
from services.fraud.rules import payment_failures, promo_abuse, purchase_velocity
from services.ledger.context import LedgerContext

PROMO_SOURCE = text(
    """
    SELECT c.code, r.source,
           (SELECT count(DISTINCT o.user_id) FROM promo_reservations o
             WHERE o.promo_code_id = r.promo_code_id AND o.source = r.source
               AND o.status = 'redeemed' AND o.redeemed_at > :since) AS accounts
      FROM promo_reservations r JOIN promo_codes c ON c.id = r.promo_code_id
     WHERE r.id = :id
    """
)
COUNT = text(
    "SELECT count(*) FROM purchases WHERE user_id = :u AND status = ANY(CAST(:statuses AS text[])) "
    "AND updated_at > :since"
)


async def _count(ctx: LedgerContext, user_id: str, statuses: list[str], minutes: int) -> int:
    since = ctx.now - timedelta(minutes=minutes)
    return int(await ctx.conn.scalar(COUNT, {"u": user_id, "statuses": statuses, "since": since}) or 0)


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
    """Many accounts redeeming one code from one client address: promo farming."""
    window = ctx.settings.fraud_promo_window_minutes
    since = ctx.now - timedelta(minutes=window)
    row = (await ctx.conn.execute(PROMO_SOURCE, {"id": reservation_id, "since": since})).first()
    if row is None or not row.source:
        return []
    verdict = promo_abuse(int(row.accounts), ctx.settings.fraud_max_promo_accounts_per_source,
                          row.code, row.source)
    return await raise_flag(ctx, command, verdict) if verdict else []
