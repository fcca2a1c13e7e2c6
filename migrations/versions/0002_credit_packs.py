"""Credit packs bought through Stripe: catalogue, customers, purchases, webhook inbox.

A PaymentIntent grants at most once: `purchases.payment_intent_id` is unique and the
grant's ledger transaction carries the PaymentIntent id, unique among purchases.

Revision ID: 0002_credit_packs
Revises: 0001_ledger
"""

from alembic import op

revision = "0002_credit_packs"
down_revision = "0001_ledger"
branch_labels = None
depends_on = None

# PURCHASE_REVERSAL: credits taken back when Stripe refunds a purchase's money.
TRANSACTION_TYPES = (
    "CREDIT_PURCHASE",
    "MEMBERSHIP_PAYMENT",
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


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE credit_packs (
            id text PRIMARY KEY CHECK (id ~ '^[a-z0-9_-]{1,64}$'),
            name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
            credits bigint NOT NULL CHECK (credits > 0),
            bonus_credits bigint NOT NULL DEFAULT 0 CHECK (bonus_credits >= 0),
            price_minor bigint NOT NULL CHECK (price_minor > 0),
            currency char(3) NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
            active boolean NOT NULL DEFAULT true,
            stripe_product_id text,
            stripe_price_id text,
            -- "<price>:<currency>" the Stripe price was made for (Stripe prices are immutable)
            stripe_price_terms text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE stripe_customers (
            user_id text PRIMARY KEY,
            customer_id text NOT NULL UNIQUE,
            email text,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE purchases (
            id uuid PRIMARY KEY,
            user_id text NOT NULL,
            pack_id text NOT NULL REFERENCES credit_packs (id),
            credits bigint NOT NULL CHECK (credits > 0),
            bonus_credits bigint NOT NULL CHECK (bonus_credits >= 0),
            amount_minor bigint NOT NULL CHECK (amount_minor > 0),
            currency char(3) NOT NULL,
            status text NOT NULL
                CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded')),
            payment_intent_id text UNIQUE,
            checkout_session_id text UNIQUE,
            failure_code text,
            grant_transaction_id uuid REFERENCES ledger_transactions (id),
            bonus_transaction_id uuid REFERENCES ledger_transactions (id),
            -- Running totals of money refunded in Stripe and of the credits it took back
            -- (clawed = taken from the purchase's batches + shortfall already spent).
            refunded_minor bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
            clawed_credits bigint NOT NULL DEFAULT 0 CHECK (clawed_credits >= 0),
            shortfall_credits bigint NOT NULL DEFAULT 0 CHECK (shortfall_credits >= 0),
            email text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX purchases_user ON purchases (user_id, created_at DESC)")
    op.execute("ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_type_check")
    op.execute(
        "ALTER TABLE ledger_transactions ADD CONSTRAINT ledger_transactions_type_check CHECK "
        f"(type IN ({', '.join(repr(t) for t in TRANSACTION_TYPES)}))"
    )
    op.execute(
        "CREATE UNIQUE INDEX ledger_purchase_grant_once ON ledger_transactions "
        "(stripe_payment_intent_id) WHERE type = 'CREDIT_PURCHASE'"
    )
    op.execute(
        """
        CREATE TABLE stripe_events (
            event_id text PRIMARY KEY,
            type text NOT NULL,
            object_id text,
            livemode boolean NOT NULL DEFAULT false,
            received_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS stripe_events")
    op.execute("DROP INDEX IF EXISTS ledger_purchase_grant_once")
    op.execute("DROP TABLE IF EXISTS purchases")
    op.execute("DROP TABLE IF EXISTS stripe_customers")
    op.execute("DROP TABLE IF EXISTS credit_packs")
