"""The reports as set-based SQL over indexed columns (no rollup table: see decision 29).

Every report takes a half-open UTC range [from, to) and buckets by `date_trunc` in
UTC. Buckets with nothing in them are present with zeros, so charts and CSVs have a
row per day or month.

Credit flows are classified by transaction type, with the sign each type has on the
users' side of the ledger (an ADJUSTMENT with a hold is a fraud confirmation taking
frozen credits back; without one it is a grant). The liability at a bucket's end is
the opening liability plus the flows so far, where the opening liability is today's
running balances less the flows in the range and after it (so only the range and what
follows it are scanned, the latter through the time index); the tests check it against
balances replayed from the postings.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.errors import ValidationFailed
from services.promos.stats_queries import NOT_A_FREEZE, SPENDING

Granularity = Literal["day", "month"]
MAX_BUCKETS = {"day": 400, "month": 120}

BUCKETS = """
    SELECT generate_series(date_trunc(:g, CAST(:start AS timestamptz)),
                           CAST(:end AS timestamptz) - interval '1 microsecond',
                           CAST('1 ' || :g AS interval)) AS start
"""
REVENUE = text(
    f"""
    WITH b AS ({BUCKETS}),
    paid AS (
        SELECT date_trunc(:g, created_at) AS start,
               sum(amount_minor) FILTER (WHERE type = 'CREDIT_PURCHASE')::bigint AS packs,
               sum(amount_minor) FILTER (WHERE type = 'MEMBERSHIP_PAYMENT')::bigint AS memberships
          FROM ledger_transactions
         WHERE created_at >= :start AND created_at < :end AND currency = :currency
           AND type IN ('CREDIT_PURCHASE', 'MEMBERSHIP_PAYMENT')
         GROUP BY 1
    ), back AS (
        SELECT date_trunc(:g, created_at) AS start, sum(amount_minor)::bigint AS refunds
          FROM purchase_refunds
         WHERE created_at >= :start AND created_at < :end AND currency = :currency
         GROUP BY 1
    )
    SELECT b.start, coalesce(paid.packs, 0) AS packs,
           coalesce(paid.memberships, 0) AS memberships, coalesce(back.refunds, 0) AS refunds
      FROM b LEFT JOIN paid USING (start) LEFT JOIN back USING (start)
     ORDER BY b.start
    """
)
FLOW_KINDS = {
    "issued_purchased": "type = 'CREDIT_PURCHASE'",
    "issued_membership": "type = 'MEMBERSHIP_PAYMENT'",
    "issued_promotional": "type = 'PROMO_BONUS' OR (type = 'ADJUSTMENT' AND hold_id IS NULL)",
    "issued_refunded": "type = 'CREDIT_REFUND'",
    "consumed": "type = 'CREDIT_USAGE'",
    "expired": "type = 'CREDIT_EXPIRY'",
    "clawed_back": "type = 'PURCHASE_REVERSAL' OR (type = 'ADJUSTMENT' AND hold_id IS NOT NULL)",
}
INFLOWS = ("issued_purchased", "issued_membership", "issued_promotional", "issued_refunded")
FLOW_TYPES = ("CREDIT_PURCHASE", "MEMBERSHIP_PAYMENT", "PROMO_BONUS", "ADJUSTMENT",
              "CREDIT_REFUND", "CREDIT_USAGE", "CREDIT_EXPIRY", "PURCHASE_REVERSAL")
_FILTERS = ",\n".join(
    f"coalesce(sum(credits) FILTER (WHERE {cond}), 0)::bigint AS {name}" for name, cond in FLOW_KINDS.items()
)
CREDITS = text(
    f"""
    WITH b AS ({BUCKETS}),
    flows AS (
        SELECT date_trunc(:g, created_at) AS start, {_FILTERS}
          FROM ledger_transactions
         WHERE created_at >= :start AND created_at < :end
           AND type IN ({", ".join(repr(t) for t in FLOW_TYPES)})
         GROUP BY 1
    )
    SELECT b.start, {", ".join(f"coalesce(flows.{n}, 0) AS {n}" for n in FLOW_KINDS)}
      FROM b LEFT JOIN flows USING (start)
     ORDER BY b.start
    """
)
_NET = " + ".join(f"({cond})::int" for name, cond in FLOW_KINDS.items() if name in INFLOWS)
_OUT = " + ".join(f"({cond})::int" for name, cond in FLOW_KINDS.items() if name not in INFLOWS)
SINCE = text(
    f"""
    SELECT coalesce(sum(credits * (({_NET}) - ({_OUT}))), 0)::bigint
      FROM ledger_transactions
     WHERE created_at >= :end AND type IN ({", ".join(repr(t) for t in FLOW_TYPES)})
    """
)
LIABILITY_NOW = text(
    "SELECT coalesce(sum(available + held), 0)::bigint FROM accounts WHERE system_code IS NULL"
)
PACKS = text(
    """
    SELECT p.pack_id, c.name, count(*) AS purchases, sum(t.amount_minor)::bigint AS revenue,
           sum(p.refunded_minor)::bigint AS refunded,
           sum(p.credits + p.bonus_credits + p.promo_bonus_credits)::bigint AS credits
      FROM ledger_transactions t
      JOIN purchases p ON p.grant_transaction_id = t.id
      JOIN credit_packs c ON c.id = p.pack_id
     WHERE t.type = 'CREDIT_PURCHASE' AND t.created_at >= :start AND t.created_at < :end
       AND t.currency = :currency
     GROUP BY p.pack_id, c.name
     ORDER BY revenue DESC, purchases DESC, p.pack_id
    """
)
CHURN = text(
    f"""
    WITH b AS ({BUCKETS}),
    m AS (
        SELECT m.id, m.plan_id, first.started,
               CASE WHEN m.status = 'canceled' THEN m.canceled_at END AS ended
          FROM memberships m
          JOIN (SELECT membership_id, min(period_start) AS started FROM membership_periods
                 GROUP BY membership_id) first ON first.membership_id = m.id
    ), plans AS (SELECT DISTINCT plan_id FROM m)
    SELECT b.start, plans.plan_id,
           count(m.id) FILTER (WHERE m.started < b.start
                               AND (m.ended IS NULL OR m.ended >= b.start)) AS at_start,
           count(m.id) FILTER (WHERE m.started >= b.start
                               AND m.started < b.start + CAST('1 ' || :g AS interval)) AS new,
           count(m.id) FILTER (WHERE m.ended >= b.start
                               AND m.ended < b.start + CAST('1 ' || :g AS interval)) AS canceled
      FROM b CROSS JOIN plans LEFT JOIN m ON m.plan_id = plans.plan_id
     GROUP BY b.start, plans.plan_id
     ORDER BY b.start, plans.plan_id
    """
)
PROMOS = text(
    f"""
    WITH used AS (
        SELECT r.promo_code_id, p.discount_minor, p.amount_minor, p.currency,
               p.promo_bonus_credits, p.promo_bonus_transaction_id
          FROM promo_reservations r
          JOIN purchases p ON p.reservation_id = r.id
         WHERE r.status = 'redeemed' AND r.redeemed_at >= :start AND r.redeemed_at < :end
    ), spent AS (
        SELECT u.promo_code_id, -sum(a.amount)::bigint AS n
          FROM used u
          JOIN credit_batches cb ON cb.transaction_id = u.promo_bonus_transaction_id
          JOIN batch_allocations a ON coalesce(a.origin_batch_id, a.batch_id) = cb.id
          JOIN ledger_transactions t ON t.id = a.transaction_id
         WHERE {SPENDING} AND {NOT_A_FREEZE}
         GROUP BY u.promo_code_id
    ), trials AS (
        SELECT promo_code_id, count(*) AS n FROM promo_reservations
         WHERE status = 'redeemed' AND membership_id IS NOT NULL
           AND redeemed_at >= :start AND redeemed_at < :end
         GROUP BY promo_code_id
    )
    SELECT c.id, c.code, c.kind,
           coalesce(count(u.promo_code_id), 0) + coalesce(max(trials.n), 0) AS redemptions,
           coalesce(sum(u.discount_minor), 0)::bigint AS discount_given,
           coalesce(sum(u.amount_minor), 0)::bigint AS revenue, min(u.currency) AS currency,
           coalesce(sum(u.promo_bonus_credits), 0)::bigint AS bonus_granted,
           coalesce(max(spent.n), 0) AS bonus_spent
      FROM promo_codes c
      LEFT JOIN used u ON u.promo_code_id = c.id
      LEFT JOIN spent ON spent.promo_code_id = c.id
      LEFT JOIN trials ON trials.promo_code_id = c.id
     GROUP BY c.id, c.code, c.kind
    HAVING count(u.promo_code_id) > 0 OR max(trials.n) > 0
     ORDER BY redemptions DESC, c.code
    """
)


@dataclass(frozen=True)
class Range:
    start: datetime
    end: datetime
    granularity: Granularity = "day"

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValidationFailed("`to` must be after `from`", start=self.start.isoformat())
        days = (self.end - self.start) / timedelta(days=1)
        buckets = days if self.granularity == "day" else days / 28
        if buckets > MAX_BUCKETS[self.granularity]:
            raise ValidationFailed(
                f"at most {MAX_BUCKETS[self.granularity]} {self.granularity} buckets per report",
                granularity=self.granularity,
            )

    def params(self, **extra: Any) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "g": self.granularity, **extra}


async def _utc(conn: AsyncConnection) -> None:
    """Buckets are UTC days and months whatever the server's time zone."""
    await conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))


def _totals(buckets: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, int]:
    return {k: sum(b[k] for b in buckets) for k in keys}


async def revenue(conn: AsyncConnection, period: Range, currency: str) -> dict[str, Any]:
    await _utc(conn)
    rows = await conn.execute(REVENUE, period.params(currency=currency))
    buckets = [
        {"start": r.start, "gross": r.packs + r.memberships, "refunds": r.refunds,
         "net": r.packs + r.memberships - r.refunds, "packs": r.packs, "memberships": r.memberships}
        for r in rows
    ]
    keys = ("gross", "refunds", "net", "packs", "memberships")
    return {"currency": currency, "buckets": buckets, "totals": _totals(buckets, keys)}


async def credits(conn: AsyncConnection, period: Range) -> dict[str, Any]:
    await _utc(conn)
    rows = [dict(r) for r in (await conn.execute(CREDITS, period.params())).mappings()]
    now = int(await conn.scalar(LIABILITY_NOW) or 0)
    after = int(await conn.scalar(SINCE, {"end": period.end}) or 0)
    nets = [sum(row[k] for k in INFLOWS) - sum(row[k] for k in FLOW_KINDS if k not in INFLOWS)
            for row in rows]
    liability = opening = now - after - sum(nets)
    for row, net in zip(rows, nets, strict=True):
        liability += net
        row["liability"] = liability
    return {"opening_liability": opening, "buckets": rows, "totals": _totals(rows, tuple(FLOW_KINDS))}


async def packs(conn: AsyncConnection, period: Range, currency: str) -> dict[str, Any]:
    rows = await conn.execute(PACKS, period.params(currency=currency))
    return {"currency": currency, "items": [
        {"pack_id": r.pack_id, "name": r.name, "purchases": r.purchases, "revenue": r.revenue,
         "refunded": r.refunded, "net": r.revenue - r.refunded, "credits": r.credits}
        for r in rows
    ]}


async def churn(conn: AsyncConnection, period: Range) -> dict[str, Any]:
    await _utc(conn)
    rows = await conn.execute(CHURN, period.params())
    return {"buckets": [
        {"start": r.start, "plan_id": r.plan_id, "at_start": r.at_start, "new": r.new,
         "canceled": r.canceled,
         "churn_rate_bp": r.canceled * 10_000 // r.at_start if r.at_start else 0}
        for r in rows
    ]}


async def promo_codes(conn: AsyncConnection, period: Range) -> dict[str, Any]:
    rows = await conn.execute(PROMOS, period.params())
    return {"items": [
        {"code_id": r.id, "code": r.code, "kind": r.kind, "redemptions": r.redemptions,
         "discount_given": r.discount_given, "revenue": r.revenue,
         "currency": r.currency.strip() if r.currency else None,
         "bonus_credits_granted": r.bonus_granted, "bonus_credits_spent": r.bonus_spent}
        for r in rows
    ]}
