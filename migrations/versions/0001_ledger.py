"""Ledger spine: accounts, transactions, postings, batches, holds, commands, outbox.

The ledger's invariants live here as well as in Python, so no code path (a bug, an
operator's psql session) can break them:
- the postings of every INSERT statement into `postings` sum to zero per transaction
  (all postings of a transaction are written in one statement);
- postings, transactions and batch allocations are append-only (only a transaction's
  `status` may change);
- user balances and batch remainders never go below zero; a remainder never exceeds
  its batch.

Revision ID: 0001_ledger
Revises:
"""

from alembic import op

revision = "0001_ledger"
down_revision = None
branch_labels = None
depends_on = None

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
)
SYSTEM_ACCOUNTS = (
    "purchases",
    "membership",
    "promotions",
    "refunds",
    "bookings",
    "expired",
    "adjustments",
)


def upgrade() -> None:
    types = ", ".join(f"'{t}'" for t in TRANSACTION_TYPES)
    op.execute(
        """
        CREATE TABLE accounts (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            user_id text UNIQUE,
            system_code text UNIQUE,
            available bigint NOT NULL DEFAULT 0,
            held bigint NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT account_owner CHECK ((user_id IS NULL) <> (system_code IS NULL)),
            CONSTRAINT user_balance_not_negative
                CHECK (user_id IS NULL OR (available >= 0 AND held >= 0)),
            CONSTRAINT system_balance_is_derived
                CHECK (system_code IS NULL OR (available = 0 AND held = 0))
        )
        """
    )
    op.execute(
        f"""
        CREATE TABLE ledger_transactions (
            id uuid PRIMARY KEY,
            seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
            type text NOT NULL CHECK (type IN ({types})),
            status text NOT NULL DEFAULT 'COMPLETED',
            user_id text NOT NULL,
            counterparty_user_id text,
            credits bigint NOT NULL CHECK (credits > 0),
            amount_minor bigint CHECK (amount_minor >= 0),
            currency char(3),
            stripe_payment_intent_id text,
            command_id uuid NOT NULL,
            reference text,
            related_transaction_id uuid REFERENCES ledger_transactions (id),
            hold_id uuid,
            metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT money_has_currency CHECK ((amount_minor IS NULL) = (currency IS NULL))
        )
        """
    )
    op.execute("CREATE INDEX ledger_tx_user_seq ON ledger_transactions (user_id, seq DESC)")
    op.execute(
        "CREATE INDEX ledger_tx_counterparty_seq ON ledger_transactions "
        "(counterparty_user_id, seq DESC) WHERE counterparty_user_id IS NOT NULL"
    )
    op.execute(
        "CREATE INDEX ledger_tx_related ON ledger_transactions (related_transaction_id) "
        "WHERE related_transaction_id IS NOT NULL"
    )
    op.execute(
        """
        CREATE TABLE postings (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            transaction_id uuid NOT NULL REFERENCES ledger_transactions (id),
            account_id bigint NOT NULL REFERENCES accounts (id),
            bucket text NOT NULL CHECK (bucket IN ('available', 'held')),
            amount bigint NOT NULL CHECK (amount <> 0),
            available_after bigint,
            held_after bigint
        )
        """
    )
    op.execute("CREATE INDEX postings_transaction ON postings (transaction_id)")
    op.execute("CREATE INDEX postings_account ON postings (account_id)")
    op.execute(
        """
        CREATE TABLE credit_batches (
            id uuid PRIMARY KEY,
            account_id bigint NOT NULL REFERENCES accounts (id),
            user_id text NOT NULL,
            source text NOT NULL
                CHECK (source IN ('PURCHASED', 'MEMBERSHIP', 'PROMOTIONAL', 'REFUNDED')),
            amount bigint NOT NULL CHECK (amount > 0),
            remaining bigint NOT NULL,
            acquired_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'expired')),
            source_ref text,
            transaction_id uuid NOT NULL REFERENCES ledger_transactions (id),
            CONSTRAINT remaining_within_batch CHECK (remaining >= 0 AND remaining <= amount),
            CONSTRAINT expired_batch_is_empty CHECK (status = 'open' OR remaining = 0)
        ) WITH (fillfactor = 80)
        """
    )
    # `remaining` is deliberately in no index, so spending updates stay HOT.
    op.execute(
        "CREATE INDEX batches_spend_order ON credit_batches "
        "(account_id, expires_at, acquired_at, id)"
    )
    op.execute("CREATE INDEX batches_due ON credit_batches (expires_at) WHERE status = 'open'")
    op.execute(
        """
        CREATE TABLE batch_allocations (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            transaction_id uuid NOT NULL REFERENCES ledger_transactions (id),
            batch_id uuid NOT NULL REFERENCES credit_batches (id),
            amount bigint NOT NULL CHECK (amount <> 0),
            origin_batch_id uuid REFERENCES credit_batches (id),
            debit_transaction_id uuid REFERENCES ledger_transactions (id),
            CONSTRAINT return_names_its_debit
                CHECK ((origin_batch_id IS NULL) = (debit_transaction_id IS NULL))
        )
        """
    )
    op.execute("CREATE INDEX allocations_transaction ON batch_allocations (transaction_id)")
    op.execute(
        "CREATE INDEX allocations_debit ON batch_allocations (debit_transaction_id) "
        "WHERE debit_transaction_id IS NOT NULL"
    )
    op.execute(
        """
        CREATE TABLE holds (
            id uuid PRIMARY KEY,
            account_id bigint NOT NULL REFERENCES accounts (id),
            user_id text NOT NULL,
            reference text NOT NULL,
            credits bigint NOT NULL CHECK (credits > 0),
            status text NOT NULL
                CHECK (status IN ('open', 'captured', 'released', 'expired')),
            expires_at timestamptz NOT NULL,
            transaction_id uuid NOT NULL REFERENCES ledger_transactions (id),
            settled_transaction_id uuid REFERENCES ledger_transactions (id),
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX holds_open_reference ON holds (user_id, reference) "
        "WHERE status = 'open'"
    )
    op.execute("CREATE INDEX holds_due ON holds (expires_at) WHERE status = 'open'")
    op.execute(
        """
        CREATE TABLE processed_commands (
            command_id uuid PRIMARY KEY,
            type text NOT NULL,
            user_id text NOT NULL,
            status text NOT NULL CHECK (status IN ('applied', 'rejected')),
            error_code text,
            result jsonb NOT NULL,
            processed_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE outbox (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id uuid NOT NULL UNIQUE,
            command_id uuid,
            topic text NOT NULL,
            key text NOT NULL,
            event_type text NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz
        )
        """
    )
    op.execute("CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL")
    op.execute("CREATE INDEX outbox_command ON outbox (command_id)")

    op.execute(
        """
        CREATE FUNCTION ledger_postings_balance() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            unbalanced uuid;
        BEGIN
            SELECT transaction_id INTO unbalanced
              FROM new_postings GROUP BY transaction_id HAVING sum(amount) <> 0 LIMIT 1;
            IF unbalanced IS NOT NULL THEN
                RAISE EXCEPTION 'postings of transaction % do not sum to zero', unbalanced
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER postings_sum_to_zero AFTER INSERT ON postings
        REFERENCING NEW TABLE AS new_postings
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_balance()
        """
    )
    op.execute(
        """
        CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'ledger_transactions'
               AND (to_jsonb(NEW) - 'status') = (to_jsonb(OLD) - 'status') THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    for table in ("postings", "ledger_transactions", "batch_allocations"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
        )
    values = ", ".join(f"('{code}')" for code in SYSTEM_ACCOUNTS)
    op.execute(f"INSERT INTO accounts (system_code) VALUES {values}")


def downgrade() -> None:
    for table in (
        "outbox",
        "processed_commands",
        "holds",
        "batch_allocations",
        "credit_batches",
        "postings",
        "ledger_transactions",
        "accounts",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS ledger_postings_balance()")
    op.execute("DROP FUNCTION IF EXISTS ledger_append_only()")
