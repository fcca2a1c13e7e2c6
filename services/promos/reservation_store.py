"""The SQL of promo reservations: a use reserved, attached to a payment, redeemed or released.

`services.promos.reservations` owns the rules (limits, expiry, who may use a code).
"""

from sqlalchemy import text

from services.promos.code_store import live_use

USAGE = text(
    f"""
    SELECT count(*) FILTER (WHERE live) AS total,
           count(*) FILTER (WHERE live AND user_id = :u) AS by_user
      FROM (SELECT user_id, {live_use(":now")} AS live
              FROM promo_reservations WHERE promo_code_id = :code) r
    """
)

HAD_TRIAL = text("SELECT EXISTS (SELECT 1 FROM membership_trials WHERE user_id = :u)")

HAS_PURCHASED = text(
    "SELECT EXISTS (SELECT 1 FROM purchases WHERE user_id = :u "
    "AND status IN ('succeeded', 'refunded'))"
)

INSERT_RESERVATION = text(
    """
    INSERT INTO promo_reservations (id, promo_code_id, user_id, target_kind, target_id,
        discount_minor, currency, bonus_credits, trial_days, expires_at, source)
    VALUES (:id, :code, :u, :kind, :target, :discount, :currency, :bonus, :trial, :expires, :source)
    """
)

FIND_RESERVATION = text(
    "SELECT r.*, c.code, c.bonus_expiry_days FROM promo_reservations r "
    "JOIN promo_codes c ON c.id = r.promo_code_id WHERE r.id = :id FOR UPDATE OF r"
)

ATTACH = text(
    "UPDATE promo_reservations SET purchase_id = coalesce(:purchase, purchase_id), "
    "membership_id = coalesce(:membership, membership_id), expires_at = greatest(expires_at, :until) "
    "WHERE id = :id"
)

REDEEM = text(
    "UPDATE promo_reservations SET status = 'redeemed', redeemed_at = now() "
    "WHERE id = :id AND status <> 'redeemed' RETURNING id"
)

RELEASE = text(
    "UPDATE promo_reservations SET status = 'released', released_at = now(), release_reason = :why "
    "WHERE id = :id AND status = 'reserved' RETURNING id"
)

TIDY = text(
    "UPDATE promo_reservations SET status = 'released', released_at = now(), "
    "release_reason = 'expired' WHERE status = 'reserved' AND expires_at <= :now"
)

DETACH = text(
    "UPDATE promo_reservations SET purchase_id = NULL, membership_id = NULL "
    "WHERE id = :id AND status = 'reserved'"
)
