"""Fraud monitoring: flags raised by the worker's rules, and the cards each user paid with.

At most one open flag per user, rule and subject (`fraud_flags_one_open`), so a burst
of purchases raises one flag, not one per purchase; a resolved flag lets the rule fire
again.

Revision ID: 0006_fraud_flags
Revises: 0005_memberships
"""

from alembic import op

revision = "0006_fraud_flags"
down_revision = "0005_memberships"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE fraud_flags (
            id uuid PRIMARY KEY,
            user_id text NOT NULL,
            rule text NOT NULL CHECK (rule ~ '^[a-z_]{1,64}$'),
            -- what the flag is about within its rule: a dispute, a card, a purchase;
            -- '' for rules about the user as a whole (velocity, failures)
            subject text NOT NULL DEFAULT '',
            severity text NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'cleared', 'confirmed')),
            details jsonb NOT NULL DEFAULT '{}'::jsonb,
            command_id uuid NOT NULL,
            hold_id uuid,
            frozen_credits bigint NOT NULL DEFAULT 0 CHECK (frozen_credits >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            resolved_at timestamptz,
            resolved_by text,
            resolution_note text,
            CONSTRAINT resolved_has_time CHECK ((status = 'open') = (resolved_at IS NULL))
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX fraud_flags_one_open ON fraud_flags (user_id, rule, subject) "
        "WHERE status = 'open'"
    )
    op.execute("CREATE INDEX fraud_flags_by_time ON fraud_flags (status, created_at DESC)")
    op.execute(
        """
        CREATE TABLE card_fingerprints (
            fingerprint text NOT NULL,
            user_id text NOT NULL,
            first_seen timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (fingerprint, user_id)
        )
        """
    )
    op.execute("CREATE INDEX purchases_user_status_time ON purchases (user_id, status, updated_at)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS purchases_user_status_time")
    op.execute("DROP TABLE IF EXISTS card_fingerprints")
    op.execute("DROP TABLE IF EXISTS fraud_flags")
