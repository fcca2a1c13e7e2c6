"""Money safety: freezes as their own kind of hold, purchase debts and disputes, command
fingerprints, and ledger rules moved into the database.

- `holds.kind`: a booking hold (`credits.hold`) or a freeze (a dispute, a fraud flag).
  Only booking holds have one open hold per reference; a booking hold may not use the
  references freezes use (`dispute:`, `fraud:`).
- `credit_batches.purchase_id`: the purchase whose money stands behind a batch, so
  credits that come back to it (a released hold, a refunded charge) can pay what the
  purchase owes or be frozen while it is disputed.
- `purchases.owed_credits`: the credits a purchase must give back (refunds, a lost
  dispute); `shortfall_credits` is what is still owed: always `owed - clawed`.
- `purchase_disputes`: one row per Stripe dispute, open until the bank decides.
- `processed_commands.fingerprint`: what a command id was used for, so the same id with
  another meaning is refused rather than answered with the first command's result.
- Triggers: a hold is never settled for more than it holds; a charge is never refunded
  for more than it took; at commit, a user's available balance equals the remainders
  of their open batches.

Revision ID: 0011_money_safety
Revises: 0010_membership_trials
"""

from alembic import op

revision = "0011_money_safety"
down_revision = "0010_membership_trials"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE holds ADD COLUMN kind text NOT NULL DEFAULT 'booking' "
        "CHECK (kind IN ('booking', 'freeze'))"
    )
    # Freezes so far were holds placed by purchase or fraud handlers, never by credits.hold.
    op.execute(
        """
        UPDATE holds h SET kind = 'freeze'
          FROM ledger_transactions t JOIN processed_commands pc ON pc.command_id = t.command_id
         WHERE t.id = h.transaction_id AND pc.type <> 'credits.hold'
           AND h.reference ~ '^(dispute|fraud):'
        """
    )
    op.execute("DROP INDEX holds_open_reference")
    op.execute(
        "CREATE UNIQUE INDEX holds_open_reference ON holds (user_id, reference) "
        "WHERE status = 'open' AND kind = 'booking'"
    )
    op.execute("CREATE INDEX holds_open_freezes ON holds (user_id, reference) "
               "WHERE status = 'open' AND kind = 'freeze'")
    op.execute(
        "ALTER TABLE holds ADD CONSTRAINT booking_reference_not_reserved "
        "CHECK (kind = 'freeze' OR reference !~ '^(dispute|fraud):') NOT VALID"
    )

    op.execute("ALTER TABLE credit_batches ADD COLUMN purchase_id uuid REFERENCES purchases (id)")
    op.execute(
        """
        UPDATE credit_batches b SET purchase_id = p.id FROM purchases p
         WHERE b.transaction_id IN (p.grant_transaction_id, p.bonus_transaction_id,
                                    p.promo_bonus_transaction_id)
        """
    )
    op.execute(
        "CREATE INDEX batches_purchase ON credit_batches (purchase_id) WHERE purchase_id IS NOT NULL"
    )

    op.execute("ALTER TABLE purchases ADD COLUMN owed_credits bigint NOT NULL DEFAULT 0")
    # Earlier partial refunds could count one shortfall twice: cap at what was granted.
    op.execute(
        """
        UPDATE purchases SET owed_credits = least(
            credits + bonus_credits + promo_bonus_credits, clawed_credits + shortfall_credits)
        """
    )
    op.execute(
        "UPDATE purchases SET clawed_credits = least(clawed_credits, owed_credits), "
        "shortfall_credits = owed_credits - least(clawed_credits, owed_credits)"
    )
    op.execute(
        """
        ALTER TABLE purchases
            ADD CONSTRAINT refund_within_payment CHECK (refunded_minor <= amount_minor),
            ADD CONSTRAINT owed_within_grant
                CHECK (owed_credits <= credits + bonus_credits + promo_bonus_credits),
            ADD CONSTRAINT clawed_within_owed CHECK (clawed_credits <= owed_credits),
            ADD CONSTRAINT shortfall_is_owed_minus_clawed
                CHECK (shortfall_credits = owed_credits - clawed_credits)
        """
    )
    op.execute(
        """
        CREATE TABLE purchase_disputes (
            dispute_id text PRIMARY KEY,
            purchase_id uuid NOT NULL REFERENCES purchases (id),
            user_id text NOT NULL,
            status text NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'won', 'lost', 'warning_closed')),
            frozen_credits bigint NOT NULL DEFAULT 0 CHECK (frozen_credits >= 0),
            opened_at timestamptz NOT NULL DEFAULT now(),
            closed_at timestamptz,
            CONSTRAINT closed_has_time CHECK ((status = 'open') = (closed_at IS NULL))
        )
        """
    )
    op.execute(
        "CREATE INDEX purchase_disputes_open ON purchase_disputes (purchase_id) "
        "WHERE status = 'open'"
    )
    # Disputes so far lived only as their freezes.
    op.execute(
        """
        INSERT INTO purchase_disputes (dispute_id, purchase_id, user_id, status, frozen_credits,
                                       opened_at, closed_at)
        SELECT t.metadata ->> 'disputeId', (t.metadata ->> 'purchaseId')::uuid, h.user_id,
               CASE h.status WHEN 'open' THEN 'open' WHEN 'captured' THEN 'lost' ELSE 'won' END,
               h.credits, h.created_at, CASE WHEN h.status = 'open' THEN NULL ELSE now() END
          FROM holds h JOIN ledger_transactions t ON t.id = h.transaction_id
         WHERE h.kind = 'freeze' AND h.reference LIKE 'dispute:%'
           AND t.metadata ? 'disputeId' AND t.metadata ? 'purchaseId'
        ON CONFLICT (dispute_id) DO NOTHING
        """
    )

    op.execute("ALTER TABLE processed_commands ADD COLUMN fingerprint text")

    op.execute(
        """
        CREATE FUNCTION ledger_hold_not_oversettled() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            held bigint;
            settled bigint;
        BEGIN
            SELECT credits INTO held FROM holds WHERE id = NEW.hold_id;
            SELECT coalesce(sum(credits), 0) INTO settled FROM ledger_transactions
             WHERE hold_id = NEW.hold_id AND type <> 'CREDIT_HOLD';
            IF held IS NULL OR settled > held THEN
                RAISE EXCEPTION 'hold % settled for % credits, it holds %',
                    NEW.hold_id, settled, held USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER hold_not_oversettled AFTER INSERT ON ledger_transactions
        FOR EACH ROW WHEN (NEW.hold_id IS NOT NULL AND NEW.type <> 'CREDIT_HOLD')
        EXECUTE FUNCTION ledger_hold_not_oversettled()
        """
    )
    op.execute(
        """
        CREATE FUNCTION ledger_refund_within_charge() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            charged bigint;
            refunded bigint;
        BEGIN
            SELECT credits INTO charged FROM ledger_transactions
             WHERE id = NEW.related_transaction_id AND type = 'CREDIT_USAGE';
            SELECT coalesce(sum(credits), 0) INTO refunded FROM ledger_transactions
             WHERE related_transaction_id = NEW.related_transaction_id AND type = 'CREDIT_REFUND';
            IF charged IS NULL OR refunded > charged THEN
                RAISE EXCEPTION 'charge % refunded % credits, it took %',
                    NEW.related_transaction_id, refunded, charged
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER refund_within_charge AFTER INSERT ON ledger_transactions
        FOR EACH ROW WHEN (NEW.type = 'CREDIT_REFUND')
        EXECUTE FUNCTION ledger_refund_within_charge()
        """
    )
    op.execute(
        """
        CREATE FUNCTION ledger_available_is_batches() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            now_available bigint;
            in_batches bigint;
        BEGIN
            SELECT available INTO now_available FROM accounts WHERE id = NEW.id;
            SELECT coalesce(sum(remaining), 0) INTO in_batches FROM credit_batches
             WHERE account_id = NEW.id AND status = 'open';
            IF now_available <> in_batches THEN
                RAISE EXCEPTION 'account % has % available, its open batches hold %',
                    NEW.id, now_available, in_batches USING ERRCODE = 'check_violation';
            END IF;
            RETURN NULL;
        END $$
        """
    )
    # Deferred: within a transaction the balance and the batches move in separate
    # statements; at commit they must agree.
    op.execute(
        """
        CREATE CONSTRAINT TRIGGER available_is_open_batches AFTER UPDATE OF available
        ON accounts DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW WHEN (NEW.user_id IS NOT NULL)
        EXECUTE FUNCTION ledger_available_is_batches()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS available_is_open_batches ON accounts")
    op.execute("DROP FUNCTION IF EXISTS ledger_available_is_batches()")
    op.execute("DROP TRIGGER IF EXISTS refund_within_charge ON ledger_transactions")
    op.execute("DROP FUNCTION IF EXISTS ledger_refund_within_charge()")
    op.execute("DROP TRIGGER IF EXISTS hold_not_oversettled ON ledger_transactions")
    op.execute("DROP FUNCTION IF EXISTS ledger_hold_not_oversettled()")
    op.execute("ALTER TABLE processed_commands DROP COLUMN IF EXISTS fingerprint")
    op.execute("DROP TABLE IF EXISTS purchase_disputes")
    op.execute(
        "ALTER TABLE purchases DROP CONSTRAINT IF EXISTS refund_within_payment, "
        "DROP CONSTRAINT IF EXISTS owed_within_grant, DROP CONSTRAINT IF EXISTS clawed_within_owed, "
        "DROP CONSTRAINT IF EXISTS shortfall_is_owed_minus_clawed, "
        "DROP COLUMN IF EXISTS owed_credits"
    )
    op.execute("DROP INDEX IF EXISTS batches_purchase")
    op.execute("ALTER TABLE credit_batches DROP COLUMN IF EXISTS purchase_id")
    op.execute("ALTER TABLE holds DROP CONSTRAINT IF EXISTS booking_reference_not_reserved")
    op.execute("DROP INDEX IF EXISTS holds_open_freezes")
    op.execute("DROP INDEX holds_open_reference")
    op.execute(
        "CREATE UNIQUE INDEX holds_open_reference ON holds (user_id, reference) "
        "WHERE status = 'open'"
    )
    op.execute("ALTER TABLE holds DROP COLUMN IF EXISTS kind")
