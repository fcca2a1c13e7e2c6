"""Admin actions: who asked the support console for what, why, and under which command.

Every action an admin takes from the support console (a goodwill grant, a purchase
refund, a hold release, a fraud flag resolution, a receipt resent) is a command through
the normal path; this table records, in the transaction that records the command's
evidence and before it is published, the acting admin, the action, the customer, the
reason (required: 1 to 500 characters), the command id and the request's fields.
Nothing here is updated afterwards: the action's outcome is read by joining
`processed_commands` (status, error code, result) and `ledger_transactions` (its ledger
effect) on the command id, so the audit cannot drift from what the ledger did.

Rows are append-only: a trigger refuses UPDATE and DELETE (as for command_evidence).
`ledger_transactions.command_id` gets an index (built CONCURRENTLY, docs/decisions.md
#43): the audit finds an action's transactions by it.

Revision ID: 0014_admin_actions
Revises: 0013_outbox_trace_context
"""

from alembic import op

revision = "0014_admin_actions"
down_revision = "0013_outbox_trace_context"
branch_labels = None
depends_on = None

ACTIONS = ("grant", "refund_purchase", "release_hold", "resolve_fraud_flag", "resend_receipt")


def upgrade() -> None:
    actions = ", ".join(f"'{a}'" for a in ACTIONS)
    op.execute(
        f"""
        CREATE TABLE admin_actions (
            id uuid PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            admin_subject text NOT NULL CHECK (length(admin_subject) BETWEEN 1 AND 255),
            action text NOT NULL CHECK (action IN ({actions})),
            user_id text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
            reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500 AND reason ~ '\\S'),
            command_id uuid NOT NULL UNIQUE,
            command_type text NOT NULL,
            idempotency_key text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
            request jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX admin_actions_user ON admin_actions (user_id, seq DESC)")
    op.execute("CREATE INDEX admin_actions_admin ON admin_actions (admin_subject, seq DESC)")
    op.execute("CREATE INDEX admin_actions_time ON admin_actions (created_at)")
    op.execute(
        """
        CREATE FUNCTION admin_actions_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'admin_actions is append-only (% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER admin_actions_append_only BEFORE UPDATE OR DELETE ON admin_actions "
        "FOR EACH ROW EXECUTE FUNCTION admin_actions_append_only()"
    )
    # TRUNCATE skips row triggers: refuse it with a statement trigger.
    op.execute(
        "CREATE TRIGGER admin_actions_no_truncate BEFORE TRUNCATE ON admin_actions "
        "FOR EACH STATEMENT EXECUTE FUNCTION admin_actions_append_only()"
    )
    with op.get_context().autocommit_block():
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ledger_tx_command "
            "ON ledger_transactions (command_id)"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ledger_tx_command")
    op.execute("DROP TABLE IF EXISTS admin_actions")
    op.execute("DROP FUNCTION IF EXISTS admin_actions_append_only()")
