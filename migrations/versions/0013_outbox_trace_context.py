"""Outbox trace context: the W3C `traceparent` an event is published with.

The ledger writes, for each event, the trace context of the command that caused it;
the relay sends it back as the event record's `traceparent` header, so a trace goes
on through the outbox (docs/operations.md, "Tracing"). NULL when the command carried
none and tracing was off.

A nullable column without a default is a catalogue change only: no table rewrite and
only a brief ACCESS EXCLUSIVE lock, safe on a large outbox. `lock_timeout` keeps the
migration from queueing behind a long transaction (and every writer behind it).

Revision ID: 0013_outbox_trace_context
Revises: 0012_command_evidence
"""

from alembic import op

revision = "0013_outbox_trace_context"
down_revision = "0012_command_evidence"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE outbox ADD COLUMN trace_context text")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN trace_context")
