"""Promo codes: the codes, and the reservations that become redemptions.

Limits hold under concurrency because an apply locks its code's row, counts the live
uses (redeemed, or reserved and not yet expired) and inserts its reservation in that
one transaction. A reservation expires by time alone (no job is needed for the count
to be right); `expire` only tidies their status.

Revision ID: 0007_promo_codes
Revises: 0006_fraud_flags
"""

from alembic import op

revision = "0007_promo_codes"
down_revision = "0006_fraud_flags"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE promo_codes (
            id uuid PRIMARY KEY,
            code text NOT NULL CHECK (code ~ '^[A-Z0-9_-]{3,40}$'),
            kind text NOT NULL
                CHECK (kind IN ('percentage', 'fixed_amount', 'bonus_credits', 'free_trial')),
            percent_off int CHECK (percent_off BETWEEN 10 AND 50),
            amount_off_minor bigint CHECK (amount_off_minor BETWEEN 500 AND 5000),
            currency char(3) CHECK (currency ~ '^[a-z]{3}$'),
            bonus_credits bigint CHECK (bonus_credits > 0),
            bonus_expiry_days int CHECK (bonus_expiry_days > 0),
            trial_days int CHECK (trial_days BETWEEN 1 AND 365),
            usage_limit int CHECK (usage_limit > 0),
            per_user_limit int NOT NULL DEFAULT 1 CHECK (per_user_limit > 0),
            new_customers_only boolean NOT NULL DEFAULT false,
            allowed_users text[],
            valid_from timestamptz,
            valid_until timestamptz,
            minimum_amount_minor bigint CHECK (minimum_amount_minor > 0),
            pack_ids text[],
            plan_ids text[],
            active boolean NOT NULL DEFAULT true,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT kind_has_its_value CHECK (
                (kind = 'percentage') = (percent_off IS NOT NULL)
                AND (kind = 'fixed_amount') = (amount_off_minor IS NOT NULL AND currency IS NOT NULL)
                AND (kind = 'bonus_credits') = (bonus_credits IS NOT NULL)
                AND (kind = 'free_trial') = (trial_days IS NOT NULL)),
            CONSTRAINT valid_window CHECK (valid_until IS NULL OR valid_from IS NULL
                                           OR valid_until > valid_from)
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX promo_codes_code ON promo_codes (code)")
    op.execute(
        """
        CREATE TABLE promo_reservations (
            id uuid PRIMARY KEY,
            promo_code_id uuid NOT NULL REFERENCES promo_codes (id),
            user_id text NOT NULL,
            target_kind text NOT NULL CHECK (target_kind IN ('pack', 'plan')),
            target_id text NOT NULL,
            status text NOT NULL DEFAULT 'reserved'
                CHECK (status IN ('reserved', 'redeemed', 'released')),
            discount_minor bigint NOT NULL DEFAULT 0 CHECK (discount_minor >= 0),
            currency char(3),
            bonus_credits bigint NOT NULL DEFAULT 0 CHECK (bonus_credits >= 0),
            trial_days int NOT NULL DEFAULT 0,
            purchase_id uuid,
            membership_id uuid,
            expires_at timestamptz NOT NULL,
            source text,
            created_at timestamptz NOT NULL DEFAULT now(),
            redeemed_at timestamptz,
            released_at timestamptz,
            release_reason text
        )
        """
    )
    op.execute("CREATE INDEX promo_reservations_code ON promo_reservations (promo_code_id, status)")
    op.execute("CREATE INDEX promo_reservations_user ON promo_reservations (user_id, promo_code_id)")
    op.execute(
        "CREATE UNIQUE INDEX promo_reservations_purchase ON promo_reservations (purchase_id) "
        "WHERE purchase_id IS NOT NULL"
    )
    op.execute(
        """
        ALTER TABLE purchases
            ADD COLUMN list_amount_minor bigint,
            ADD COLUMN discount_minor bigint NOT NULL DEFAULT 0 CHECK (discount_minor >= 0),
            ADD COLUMN promo_code text,
            ADD COLUMN reservation_id uuid REFERENCES promo_reservations (id),
            ADD COLUMN promo_bonus_credits bigint NOT NULL DEFAULT 0
                CHECK (promo_bonus_credits >= 0),
            ADD COLUMN promo_bonus_expiry_days int,
            ADD COLUMN promo_bonus_transaction_id uuid REFERENCES ledger_transactions (id)
        """
    )

    # A trial's length is the membership's (the plan's, or a free-trial code's).
    op.execute(
        "ALTER TABLE memberships ADD COLUMN trial_days int NOT NULL DEFAULT 0, "
        "ADD COLUMN reservation_id uuid REFERENCES promo_reservations (id)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE memberships DROP COLUMN IF EXISTS reservation_id, "
        "DROP COLUMN IF EXISTS trial_days"
    )
    op.execute(
        """
        ALTER TABLE purchases DROP COLUMN IF EXISTS promo_bonus_transaction_id,
            DROP COLUMN IF EXISTS promo_bonus_expiry_days, DROP COLUMN IF EXISTS promo_bonus_credits,
            DROP COLUMN IF EXISTS reservation_id, DROP COLUMN IF EXISTS promo_code,
            DROP COLUMN IF EXISTS discount_minor, DROP COLUMN IF EXISTS list_amount_minor
        """
    )
    op.execute("DROP TABLE IF EXISTS promo_reservations")
    op.execute("DROP TABLE IF EXISTS promo_codes")
