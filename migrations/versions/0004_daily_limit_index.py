"""Index for MAX_DAILY_TRANSACTIONS: a user's counted transactions by time.

Partial: only the types the limit counts (charges and captures, transfers sent,
purchases), so refunds, holds and expiry cost nothing extra.

Revision ID: 0004_daily_limit_index
Revises: 0003_notifications
"""

from alembic import op

revision = "0004_daily_limit_index"
down_revision = "0003_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ledger_tx_user_daily ON ledger_transactions (user_id, created_at) "
        "WHERE type IN ('CREDIT_USAGE', 'CREDIT_TRANSFER', 'CREDIT_PURCHASE')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ledger_tx_user_daily")
