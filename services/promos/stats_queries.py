"""The SQL of a promo code's performance: its reservations, purchases and bonus batches.

SPENDING and NOT_A_FREEZE are shared with the reports, so both count spending alike.
"""

from sqlalchemy import text

SPENDING = "t.type IN ('CREDIT_USAGE', 'CREDIT_HOLD', 'CREDIT_REFUND', 'CREDIT_RELEASE')"

NOT_A_FREEZE = (
    "coalesce(t.reference, '') NOT LIKE 'dispute:%' AND coalesce(t.reference, '') NOT LIKE 'fraud:%'"
)

STATS = text(
    f"""
    WITH r AS (
        SELECT * FROM promo_reservations WHERE promo_code_id = :id
    ), paid AS (
        SELECT p.* FROM purchases p JOIN r ON r.id = p.reservation_id
         WHERE r.status = 'redeemed' AND p.status IN ('succeeded', 'refunded')
    ), bonus AS (
        SELECT b.id, b.amount FROM credit_batches b
          JOIN paid ON b.transaction_id = paid.promo_bonus_transaction_id
    ), moved AS (
        SELECT t.type, a.amount FROM batch_allocations a
          JOIN bonus ON bonus.id = coalesce(a.origin_batch_id, a.batch_id)
          JOIN ledger_transactions t ON t.id = a.transaction_id
         WHERE {NOT_A_FREEZE}
    )
    -- sum(bigint) is numeric (a Decimal): cast back, the wire model takes integers only.
    SELECT (SELECT count(*) FROM r) AS reservations,
           (SELECT count(*) FROM r WHERE status = 'reserved' AND expires_at > now()) AS live,
           (SELECT count(*) FROM r WHERE status = 'redeemed') AS redemptions,
           (SELECT count(*) FROM r WHERE status = 'released'
                OR (status = 'reserved' AND expires_at <= now())) AS released,
           (SELECT coalesce(sum(discount_minor), 0)::bigint FROM paid) AS discount_given,
           (SELECT coalesce(sum(amount_minor - refunded_minor), 0)::bigint FROM paid) AS revenue,
           (SELECT min(currency) FROM paid) AS currency,
           (SELECT coalesce(sum(amount), 0)::bigint FROM bonus) AS bonus_granted,
           (SELECT coalesce(-sum(amount), 0)::bigint FROM moved t WHERE {SPENDING}) AS bonus_spent,
           (SELECT coalesce(-sum(amount), 0)::bigint FROM moved WHERE type = 'PURCHASE_REVERSAL')
               AS bonus_clawed
    """
)
