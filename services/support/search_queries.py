"""Finding a customer by any key a support request may carry.

Each key is matched exactly: a user id, an email address (case-insensitively, wherever
the service keeps one), a Stripe customer id, a PaymentIntent id, a ledger transaction
id. Only the branches the query can match run: an email branch for a query with `@`,
the transaction branch for a UUID; every other branch reads an index.
"""

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

BY_USER_ID = """
    SELECT user_id, 'userId' AS matched_by, 'accounts' AS detail
      FROM accounts WHERE user_id = :q
    UNION ALL SELECT user_id, 'userId', 'purchases' FROM purchases WHERE user_id = :q
    UNION ALL SELECT user_id, 'userId', 'memberships' FROM memberships WHERE user_id = :q
    UNION ALL SELECT user_id, 'userId', 'stripe_customers' FROM stripe_customers WHERE user_id = :q
    UNION ALL SELECT user_id, 'userId', 'sent_notifications'
      FROM sent_notifications WHERE user_id = :q
"""
BY_STRIPE_IDS = """
    UNION ALL SELECT user_id, 'stripeCustomerId', 'stripe_customers.customer_id'
      FROM stripe_customers WHERE customer_id = :q
    UNION ALL SELECT user_id, 'paymentIntentId', 'purchases.payment_intent_id'
      FROM purchases WHERE payment_intent_id = :q
    UNION ALL SELECT user_id, 'paymentIntentId', 'ledger_transactions.stripe_payment_intent_id'
      FROM ledger_transactions
     WHERE stripe_payment_intent_id = :q AND type = 'CREDIT_PURCHASE'
"""
# No index serves these (emails are looked up rarely, by support only).
BY_EMAIL = """
    UNION ALL SELECT user_id, 'email', 'stripe_customers.email'
      FROM stripe_customers WHERE lower(email) = lower(:q)
    UNION ALL SELECT user_id, 'email', 'purchases.email' FROM purchases WHERE lower(email) = lower(:q)
    UNION ALL SELECT user_id, 'email', 'memberships.email'
      FROM memberships WHERE lower(email) = lower(:q)
    UNION ALL SELECT user_id, 'email', 'sent_notifications.recipient'
      FROM sent_notifications WHERE lower(recipient) = lower(:q)
"""
BY_TRANSACTION = """
    UNION ALL SELECT user_id, 'transactionId', 'ledger_transactions.user_id'
      FROM ledger_transactions WHERE id = CAST(:tx AS uuid)
    UNION ALL SELECT counterparty_user_id, 'transactionId', 'ledger_transactions.counterparty_user_id'
      FROM ledger_transactions WHERE id = CAST(:tx AS uuid) AND counterparty_user_id IS NOT NULL
"""
GROUPED = """
    SELECT user_id, matched_by, string_agg(DISTINCT detail, ', ' ORDER BY detail) AS detail
      FROM ({branches}) found
     GROUP BY user_id, matched_by
     ORDER BY user_id, matched_by
     LIMIT :limit
"""


def _as_uuid(q: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(q)
    except ValueError:
        return None


async def find_matches(conn: AsyncConnection, q: str, limit: int) -> list[dict[str, Any]]:
    """(user id, what matched, where) for every user `q` names exactly, at most `limit`."""
    branches = BY_USER_ID + BY_STRIPE_IDS
    params: dict[str, Any] = {"q": q, "limit": limit}
    if "@" in q:
        branches += BY_EMAIL
    transaction_id = _as_uuid(q)
    if transaction_id is not None:
        branches += BY_TRANSACTION
        params["tx"] = transaction_id
    rows = await conn.execute(text(GROUPED.format(branches=branches)), params)
    return [dict(r) for r in rows.mappings()]
