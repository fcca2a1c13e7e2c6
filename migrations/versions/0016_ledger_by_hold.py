"""The hold-settlement invariant finds a hold's transactions by index, not by reading the ledger.

`hold_not_oversettled` (migration 0011) runs after every capture, release and freeze
settlement: it sums the credits of the ledger transactions of that hold
(`WHERE hold_id = …`). `ledger_transactions` had no index on `hold_id`, so each of
those commands read the whole ledger inside the worker's transaction: the benchmark's
mixed phase (issue 14) found Postgres at 1.4 cores for 300 commands/s, and a
single-row insert of a capture took about 4 ms on a ledger of a few hundred thousand
transactions, a cost that grows with every transaction ever written. A partial index
on the rows that carry a hold answers it directly. Built CONCURRENTLY (decision 43):
`ledger_transactions` is the largest table.

Revision ID: 0016_ledger_by_hold
Revises: 0015_holds_by_reference
"""

from alembic import op

revision = "0016_ledger_by_hold"
down_revision = "0015_holds_by_reference"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_tx_hold "
            "ON ledger_transactions (hold_id) WHERE hold_id IS NOT NULL"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ledger_tx_hold")
