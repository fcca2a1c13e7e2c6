"""The SQL of the fraud worker: signals the checks count, flags raised and resolved.

The HTTP side's reads are in `services.fraud.queries`; the rules stay in `checks`,
`flags` and `handlers`.
"""

from sqlalchemy import text

from services.promos.code_store import live_use

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

OVER_LIMIT = text(
    f"""
    SELECT c.code, c.usage_limit, c.per_user_limit,
           (SELECT count(*) FROM promo_reservations o
             WHERE o.promo_code_id = r.promo_code_id AND {live_use("now()", "o")}) AS uses,
           (SELECT count(*) FROM promo_reservations o
             WHERE o.promo_code_id = r.promo_code_id AND o.user_id = r.user_id
               AND {live_use("now()", "o")}) AS user_uses
      FROM promo_reservations r JOIN promo_codes c ON c.id = r.promo_code_id
     WHERE r.id = :id AND r.status = 'redeemed'
       AND (r.released_at IS NOT NULL OR r.expires_at <= r.redeemed_at)
    """
)

COUNT_PURCHASES = text(
    "SELECT count(*) FROM purchases WHERE user_id = :u AND status = ANY(CAST(:statuses AS text[])) "
    "AND updated_at > :since"
)

INSERT_FLAG = text(
    """
    INSERT INTO fraud_flags (id, user_id, rule, subject, severity, details, command_id)
    VALUES (:id, :u, :rule, :subject, :severity, CAST(:details AS jsonb), :command)
    ON CONFLICT (user_id, rule, subject) WHERE status = 'open' DO NOTHING
    RETURNING id
    """
)

MARK_FROZEN = text("UPDATE fraud_flags SET hold_id = :hold, frozen_credits = :n WHERE id = :id")

PURCHASED_BATCHES = text(
    """
    SELECT id, remaining, expires_at, source FROM credit_batches
     WHERE user_id = :u AND source = 'PURCHASED' AND status = 'open' AND remaining > 0
     ORDER BY expires_at DESC, acquired_at DESC, id
       FOR UPDATE
    """
)

SEE_CARD = text(
    "INSERT INTO card_fingerprints (fingerprint, user_id) VALUES (:f, :u) ON CONFLICT DO NOTHING"
)

CARD_ACCOUNTS = text("SELECT count(*) FROM card_fingerprints WHERE fingerprint = :f")

LOCK_FLAG = text("SELECT * FROM fraud_flags WHERE id = :id FOR UPDATE")

RESOLVE = text(
    "UPDATE fraud_flags SET status = :status, resolved_at = now(), resolved_by = :by, "
    "resolution_note = :note WHERE id = :id"
)
