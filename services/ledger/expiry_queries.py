"""The SQL of the expire job: open batches past their expiry, open holds past their time.

Kept apart from the ledger's own stores: the job only finds what is due, and the
ledger worker applies the expiry commands it publishes.
"""

from sqlalchemy import text

DUE_BATCHES = text(
    "SELECT id, user_id FROM credit_batches WHERE status = 'open' AND expires_at <= :now "
    "ORDER BY expires_at LIMIT :limit"
)

STALE_HOLDS = text(
    "SELECT id, user_id FROM holds WHERE status = 'open' AND expires_at <= :now "
    "ORDER BY expires_at LIMIT :limit"
)
