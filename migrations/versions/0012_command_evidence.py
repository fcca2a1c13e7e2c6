"""Command evidence: what a value-creating command rests on, recorded by its producer.

A command that creates or moves value (a purchase or membership confirmation, an admin
grant or transfer, a fraud resolution, an expiry run) is applied only when the service
that published it recorded, under the command's id and before publishing, the evidence
it rests on: a signature-verified Stripe event, a Stripe API read, an admin's request or
an operator job. A producer that can write to Kafka but not to this table cannot make
the worker apply such a command (the table is written by the ingress and the CLI jobs,
never by platform services).

Rows are append-only: a trigger refuses UPDATE and DELETE.

Revision ID: 0012_command_evidence
Revises: 0011_money_safety
"""

from alembic import op

revision = "0012_command_evidence"
down_revision = "0011_money_safety"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE command_evidence (
            command_id uuid PRIMARY KEY,
            command_type text NOT NULL,
            user_id text NOT NULL,
            fingerprint text NOT NULL CHECK (length(fingerprint) = 64),
            kind text NOT NULL
                CHECK (kind IN ('stripe_event', 'stripe_api', 'admin_request', 'operator_job')),
            reference text NOT NULL CHECK (length(reference) BETWEEN 1 AND 255),
            subject text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
            recorded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE FUNCTION command_evidence_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'command_evidence is append-only (% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER command_evidence_append_only BEFORE UPDATE OR DELETE ON command_evidence "
        "FOR EACH ROW EXECUTE FUNCTION command_evidence_append_only()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS command_evidence")
    op.execute("DROP FUNCTION IF EXISTS command_evidence_append_only()")
