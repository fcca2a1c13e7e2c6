"""Memberships: plans, Stripe subscriptions and the credits each paid period grants.

Invariants kept by the database, not only by Python:
- a user has at most one live membership (`memberships_one_live`): two concurrent
  subscribe calls cannot both create a Stripe subscription (PAY004);
- an invoice grants at most once (`membership_periods` is keyed by invoice id, and a
  unique index refuses a second MEMBERSHIP_PAYMENT naming the same invoice), and so
  does a period (unique membership + period start);
- rollover moves credits between batches with a `MEMBERSHIP_ROLLOVER` transaction
  whose postings net to zero on the user's account.

Revision ID: 0005_memberships
Revises: 0004_daily_limit_index
"""

from alembic import op

revision = "0005_memberships"
down_revision = "0004_daily_limit_index"
branch_labels = None
depends_on = None

TRANSACTION_TYPES = (
    "CREDIT_PURCHASE",
    "MEMBERSHIP_PAYMENT",
    "MEMBERSHIP_ROLLOVER",
    "CREDIT_USAGE",
    "CREDIT_REFUND",
    "CREDIT_TRANSFER",
    "CREDIT_EXPIRY",
    "PROMO_BONUS",
    "CREDIT_HOLD",
    "CREDIT_RELEASE",
    "ADJUSTMENT",
    "PURCHASE_REVERSAL",
)
LIVE = "('incomplete', 'trialing', 'active', 'past_due')"


def _types(types: tuple[str, ...]) -> None:
    op.execute("ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_type_check")
    op.execute(
        "ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_type_check CHECK "
        f"(type IN ({', '.join(repr(t) for t in types)}))"
    )


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE membership_plans (
            id text PRIMARY KEY CHECK (id ~ '^[a-z0-9_-]{1,64}$'),
            name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            price_minor bigint NOT NULL CHECK (price_minor > 0),
            currency char(3) NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
            interval text NOT NULL CHECK (interval IN ('day', 'week', 'month', 'year')),
            interval_count int NOT NULL DEFAULT 1 CHECK (interval_count BETWEEN 1 AND 12),
            credits_per_period bigint NOT NULL CHECK (credits_per_period > 0),
            rollover text NOT NULL DEFAULT 'none'
                CHECK (rollover ~ '^(none|one_cycle|capped:[1-9][0-9]{0,8})$'),
            trial_days int NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 730),
            trial_credits bigint NOT NULL DEFAULT 0 CHECK (trial_credits >= 0),
            active boolean NOT NULL DEFAULT true,
            stripe_product_id text,
            stripe_plan_id text UNIQUE,
            -- "<price>:<currency>:<interval>:<count>" the Stripe plan was made for
            stripe_plan_terms text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE memberships (
            id uuid PRIMARY KEY,
            user_id text NOT NULL,
            plan_id text NOT NULL REFERENCES membership_plans (id),
            status text NOT NULL CHECK (status IN ('incomplete', 'trialing', 'active',
                'past_due', 'canceled', 'incomplete_expired', 'unpaid', 'paused')),
            stripe_subscription_id text UNIQUE,
            stripe_customer_id text,
            current_period_start timestamptz,
            current_period_end timestamptz,
            cancel_at_period_end boolean NOT NULL DEFAULT false,
            canceled_at timestamptz,
            email text,
            failed_attempts int NOT NULL DEFAULT 0,
            -- Stripe's `created` (epoch s) of the newest subscription event applied:
            -- an older event arriving late changes nothing.
            stripe_state_at bigint NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        f"CREATE UNIQUE INDEX memberships_one_live ON memberships (user_id) WHERE status IN {LIVE}"
    )
    op.execute("CREATE INDEX memberships_user ON memberships (user_id, created_at DESC)")
    op.execute(
        """
        CREATE TABLE membership_periods (
            invoice_id text PRIMARY KEY,
            membership_id uuid NOT NULL REFERENCES memberships (id),
            plan_id text NOT NULL REFERENCES membership_plans (id),
            period_start timestamptz NOT NULL,
            period_end timestamptz NOT NULL CHECK (period_end > period_start),
            credits bigint NOT NULL CHECK (credits >= 0),
            amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
            currency char(3) NOT NULL,
            grant_transaction_id uuid REFERENCES ledger_transactions (id),
            rollover_transaction_id uuid REFERENCES ledger_transactions (id),
            expiry_transaction_id uuid REFERENCES ledger_transactions (id),
            carried_credits bigint NOT NULL DEFAULT 0 CHECK (carried_credits >= 0),
            expired_credits bigint NOT NULL DEFAULT 0 CHECK (expired_credits >= 0),
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # One grant per period too: a second invoice for a period already granted (a
    # proration invoice, say) must not grant it again.
    op.execute(
        "CREATE UNIQUE INDEX membership_periods_once ON membership_periods "
        "(membership_id, period_start)"
    )
    _types(TRANSACTION_TYPES)
    op.execute(
        "CREATE UNIQUE INDEX ledger_membership_grant_once ON ledger_transactions "
        "((metadata->>'invoiceId')) WHERE type = 'MEMBERSHIP_PAYMENT'"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ledger_membership_grant_once")
    op.execute("DROP TABLE IF EXISTS membership_periods")
    op.execute("DROP TABLE IF EXISTS memberships")
    op.execute("DROP TABLE IF EXISTS membership_plans")
    _types(tuple(t for t in TRANSACTION_TYPES if t != "MEMBERSHIP_ROLLOVER"))
