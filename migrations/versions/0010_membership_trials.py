"""Membership trials: one per user and one per card, claimed in Postgres.

A trial used to be decided per membership, so cancel-and-resubscribe gave a new trial
(and its credits) every time, with no card ever charged. A membership that gets a trial
now holds a claim in `membership_trials`:
- unique per user (`membership_trials_user`) and per card fingerprint when the
  subscribe named a payment method (`membership_trials_card`), so a second claim by the
  same user or with the same card is refused by the database, however concurrent;
- the ingress claims before it asks Stripe for `trial_period_days` and deletes the
  claim when the subscribe is refused (by Stripe, or by a limit); the worker grants
  trial credits only to a membership that holds a claim.

Memberships that already had a trial (a Stripe subscription created with trial days)
keep it: the earliest one of each user is recorded as its claim.

Revision ID: 0010_membership_trials
Revises: 0009_report_indexes
"""

from alembic import op

revision = "0010_membership_trials"
down_revision = "0009_report_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE membership_trials (
            membership_id uuid PRIMARY KEY REFERENCES memberships (id),
            user_id text NOT NULL,
            card_fingerprint text,
            trial_days int NOT NULL CHECK (trial_days > 0),
            source text NOT NULL CHECK (source IN ('plan', 'promo')),
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX membership_trials_user ON membership_trials (user_id)")
    op.execute(
        "CREATE UNIQUE INDEX membership_trials_card ON membership_trials (card_fingerprint) "
        "WHERE card_fingerprint IS NOT NULL"
    )
    op.execute(
        """
        INSERT INTO membership_trials (membership_id, user_id, trial_days, source, created_at)
        SELECT DISTINCT ON (user_id) id, user_id, trial_days,
               CASE WHEN reservation_id IS NULL THEN 'plan' ELSE 'promo' END, created_at
          FROM memberships
         WHERE trial_days > 0 AND stripe_subscription_id IS NOT NULL
         ORDER BY user_id, created_at, id
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS membership_trials")
