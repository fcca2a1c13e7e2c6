"""Reports: money refunded per event, and the time index the reports scan by.

Refunds are recorded as money moves (`purchase_refunds`), not derived from the
ledger: a refund whose credits were already spent takes no credits back, so no
ledger transaction carries its money.

Revision ID: 0008_reports
Revises: 0007_promo_codes
"""

from alembic import op

revision = "0008_reports"
down_revision = "0007_promo_codes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE purchase_refunds (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            purchase_id uuid NOT NULL REFERENCES purchases (id),
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            currency char(3) NOT NULL,
            command_id uuid NOT NULL UNIQUE,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX purchase_refunds_time ON purchase_refunds (created_at)")
    op.execute("CREATE INDEX ledger_tx_created ON ledger_transactions (created_at)")
    # Backfill what earlier refunds recorded on their purchases (time: the last change).
    op.execute(
        """
        INSERT INTO purchase_refunds (purchase_id, amount_minor, currency, command_id, created_at)
        SELECT id, refunded_minor, currency, gen_random_uuid(), updated_at
          FROM purchases WHERE refunded_minor > 0
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ledger_tx_created")
    op.execute("DROP TABLE IF EXISTS purchase_refunds")
