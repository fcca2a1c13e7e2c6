"""Email notifications: one row per (event, template), and the batches already reminded.

`sent_notifications` is both the dedupe record and the send queue of the notify
worker: a row is claimed by inserting it (a redelivered event conflicts and sends
nothing), it stays `pending` while it waits for SMTP (`next_attempt_at` is the next
try or the lease of the try in flight), and ends `sent`, `skipped` (no address
known) or `failed` (dead-lettered). The event text is kept only while the row is
pending: retries render from it, and no address book grows out of it.

`expiry_reminders` makes `pika-payment remind` warn about a batch once, ever.

Revision ID: 0003_notifications
Revises: 0002_credit_packs
"""

from alembic import op

revision = "0003_notifications"
down_revision = "0002_credit_packs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sent_notifications (
            event_id uuid NOT NULL,
            template text NOT NULL,
            user_id text NOT NULL,
            recipient text,
            status text NOT NULL CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
            attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at timestamptz,
            last_error text,
            event text,
            created_at timestamptz NOT NULL DEFAULT now(),
            sent_at timestamptz,
            PRIMARY KEY (event_id, template),
            CONSTRAINT pending_has_a_schedule
                CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
            CONSTRAINT pending_keeps_its_event CHECK (status <> 'pending' OR event IS NOT NULL),
            CONSTRAINT sent_has_a_recipient CHECK (status <> 'sent' OR recipient IS NOT NULL)
        )
        """
    )
    op.execute(
        "CREATE INDEX sent_notifications_due ON sent_notifications (next_attempt_at) "
        "WHERE status = 'pending'"
    )
    op.execute("CREATE INDEX sent_notifications_user ON sent_notifications (user_id, created_at)")
    op.execute(
        """
        CREATE TABLE expiry_reminders (
            batch_id uuid PRIMARY KEY REFERENCES credit_batches (id),
            user_id text NOT NULL,
            event_id uuid NOT NULL,
            reminded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX purchases_user_email ON purchases (user_id, created_at DESC) "
        "WHERE email IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS purchases_user_email")
    op.execute("DROP TABLE IF EXISTS expiry_reminders")
    op.execute("DROP TABLE IF EXISTS sent_notifications")
