"""Holds found by their booking reference use an index, not a scan of every hold.

A capture or release names its hold by `reference` (the Python client's and the
booking example's way). `BOOKING_HOLD_BY_REFERENCE` looks for the user's newest hold
of that reference whatever its status (a settled one answers "the hold is captured"),
so the partial unique index of open booking holds cannot serve it and Postgres read
the whole `holds` table for each capture and release: the benchmark's mixed phase
(issue 14) ran at 300 commands/s with Postgres at 1.3 cores, and the cost grows with
every hold ever placed. An index on (user_id, reference, created_at) finds the few
holds of one booking directly; built CONCURRENTLY (decision 43), as `holds` grows
with traffic.

Revision ID: 0015_holds_by_reference
Revises: 0014_admin_actions
"""

from alembic import op

revision = "0015_holds_by_reference"
down_revision = "0014_admin_actions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS holds_user_reference "
            "ON holds (user_id, reference, created_at)"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS holds_user_reference")
