"""The SQL of memberships as HTTP starts, links and reads them, and of trial claims.

The worker's side (periods, payments, Stripe states) is in `services.memberships.store`.
"""

from sqlalchemy import text

MEMBERSHIP = """
    SELECT m.id, m.user_id, m.plan_id, p.name AS plan_name, m.status, m.stripe_subscription_id,
           m.current_period_start, m.current_period_end, m.cancel_at_period_end, m.canceled_at,
           coalesce((SELECT mp.credits FROM membership_periods mp WHERE mp.membership_id = m.id
                      ORDER BY mp.period_start DESC LIMIT 1), 0) AS credits_this_period
      FROM memberships m JOIN membership_plans p ON p.id = m.plan_id
"""

BY_ID = text(MEMBERSHIP + " WHERE m.id = :id")

CURRENT = text(
    MEMBERSHIP
    + " WHERE m.user_id = :u ORDER BY (m.status = ANY(CAST(:live AS text[]))) DESC, m.created_at DESC"
    " LIMIT 1"
)

CREATE = text(
    "INSERT INTO memberships (id, user_id, plan_id, status, stripe_customer_id, email, trial_days) "
    "VALUES (:id, :u, :plan, 'incomplete', :customer, :email, :trial)"
)

SET_RESERVATION = text("UPDATE memberships SET reservation_id = :reservation WHERE id = :id")

LINK = text(
    "UPDATE memberships SET stripe_subscription_id = coalesce(stripe_subscription_id, :s), "
    "updated_at = now() WHERE id = :id"
)

ABANDON = text(
    "UPDATE memberships SET status = 'incomplete_expired', updated_at = now() "
    "WHERE id = :id AND status = 'incomplete' AND stripe_subscription_id IS NULL"
)

CLAIM = text(
    """
    INSERT INTO membership_trials (membership_id, user_id, card_fingerprint, trial_days, source)
    VALUES (:m, :u, :card, :days, :source)
    ON CONFLICT DO NOTHING
    RETURNING membership_id
    """
)

SET_DAYS = text("UPDATE memberships SET trial_days = :days, updated_at = now() WHERE id = :m")

GIVE_BACK = text("DELETE FROM membership_trials WHERE membership_id = :m")
