"""The SQL of purchase rows (started, paid, refunded) and of each buyer's Stripe customer.

Statements only, named for what they do; the modules that run them own the rules.
"""

from sqlalchemy import text

SAVE_PURCHASE = text(
    """
    INSERT INTO purchases (id, user_id, pack_id, credits, bonus_credits, amount_minor, currency,
                           status, payment_intent_id, checkout_session_id, email,
                           list_amount_minor, discount_minor, promo_code, reservation_id,
                           promo_bonus_credits, promo_bonus_expiry_days)
    VALUES (:id, :user_id, :pack_id, :credits, :bonus, :amount, :currency, 'pending', :pi,
            :session, :email, :list_amount, :discount, :promo_code, :reservation,
            :promo_bonus, :promo_bonus_days)
    ON CONFLICT (id) DO NOTHING
    """
)

FIND_PURCHASE = text(
    "SELECT id, pack_id, payment_intent_id, checkout_session_id, amount_minor, currency, "
    "credits, bonus_credits, status, list_amount_minor, discount_minor, promo_code, "
    "promo_bonus_credits FROM purchases WHERE id = :id"
)

PURCHASE_OF_GRANT = text(
    "SELECT id, payment_intent_id, amount_minor, refunded_minor, currency, status "
    "FROM purchases WHERE grant_transaction_id = :tx AND user_id = :u"
)

PURCHASE_BY_ID = text(
    "SELECT id, payment_intent_id, amount_minor, refunded_minor, currency, status "
    "FROM purchases WHERE id = :id AND user_id = :u"
)

FIND_CUSTOMER = text("SELECT customer_id FROM stripe_customers WHERE user_id = :u")

SAVE_CUSTOMER = text(
    "INSERT INTO stripe_customers (user_id, customer_id, email) VALUES (:u, :c, :e) "
    "ON CONFLICT (user_id) DO NOTHING"
)

LOCK_PURCHASE = text(
    """
    SELECT p.id, p.user_id, p.pack_id, p.credits, p.bonus_credits, p.amount_minor, p.currency,
           p.status, p.payment_intent_id, p.email, c.name AS pack_name,
           p.grant_transaction_id, p.bonus_transaction_id, p.refunded_minor, p.clawed_credits,
           p.promo_code, p.discount_minor, p.list_amount_minor, p.reservation_id,
           p.promo_bonus_credits, p.promo_bonus_expiry_days, p.promo_bonus_transaction_id,
           p.owed_credits, p.shortfall_credits
      FROM purchases p JOIN credit_packs c ON c.id = p.pack_id
     WHERE (CAST(:purchase AS uuid) IS NULL AND p.payment_intent_id = :pi)
        OR p.id = CAST(:purchase AS uuid)
       FOR UPDATE OF p
    """
)

MARK_PAYMENT_OUTCOME = text(
    "UPDATE purchases SET status = :status, grant_transaction_id = :tx, "
    "bonus_transaction_id = :bonus_tx, failure_code = :code, "
    "payment_intent_id = coalesce(payment_intent_id, :pi), updated_at = now() WHERE id = :id"
)

RECORD_REFUND = text(
    "INSERT INTO purchase_refunds (purchase_id, amount_minor, currency, command_id) "
    "VALUES (:purchase, :amount, :currency, :command) ON CONFLICT (command_id) DO NOTHING"
)

MARK_PROMO_BONUS = text("UPDATE purchases SET promo_bonus_transaction_id = :tx WHERE id = :id")

MARK_REFUNDED = text(
    "UPDATE purchases SET status = :status, refunded_minor = :refunded, updated_at = now() "
    "WHERE id = :id"
)

RECONCILE_CANDIDATES = text(
    "SELECT id, user_id, status, payment_intent_id, amount_minor, currency FROM purchases "
    "WHERE status = ANY(CAST(:statuses AS text[])) "
    "AND (id = ANY(CAST(:ids AS uuid[])) OR payment_intent_id = ANY(CAST(:intents AS text[])))"
)
