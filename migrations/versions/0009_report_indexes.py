"""Indexes the reports (and refunds) look batches up by.

`credit_batches.transaction_id` had no index: every refund and dispute looked up a
purchase's batches by scanning the table, and the promo report's "bonus spent" joined
through it. Allocations are found by the batch they came from (a return names its
origin batch).

Revision ID: 0009_report_indexes
Revises: 0008_reports
"""

from alembic import op

revision = "0009_report_indexes"
down_revision = "0008_reports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX batches_transaction ON credit_batches (transaction_id)")
    op.execute(
        "CREATE INDEX allocations_origin ON batch_allocations ((coalesce(origin_batch_id, batch_id)))"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS allocations_origin")
    op.execute("DROP INDEX IF EXISTS batches_transaction")
