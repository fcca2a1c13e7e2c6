"""Rules for new migrations, checked on the files in migrations/versions.

An index on a table that grows with traffic is built with CREATE INDEX CONCURRENTLY
(docs/decisions.md #43): a plain CREATE INDEX holds a SHARE lock that blocks every
insert and update of the table for the whole build, i.e. the ledger worker stops
for as long as Postgres reads the table. The indexes of the migrations up to
0012 were built plainly; they are applied already, editing them would change no
database, so they are listed here, each with the reason it was accepted then.
"""

import re
from pathlib import Path

VERSIONS = Path(__file__).resolve().parent.parent / "migrations" / "versions"
LARGE_TABLES = frozenset(
    {
        "ledger_transactions",
        "postings",
        "credit_batches",
        "batch_allocations",
        "holds",
        "processed_commands",
        "outbox",
        "command_evidence",
        "purchases",
        "purchase_refunds",
        "sent_notifications",
        "stripe_events",
        "memberships",
        "membership_periods",
        "fraud_flags",
        "card_fingerprints",
        "promo_reservations",
        "expiry_reminders",
    }
)
# Highest revision whose plain CREATE INDEX statements are grandfathered.
LAST_GRANDFATHERED = 12
ALREADY_APPLIED = "on a table with rows, written before this rule; applied already"
# (revision number, index) -> why a plain build is let stand.
GRANDFATHERED = {
    (1, "ledger_tx_user_seq"): "built with its table, empty",
    (1, "ledger_tx_counterparty_seq"): "built with its table, empty",
    (1, "ledger_tx_related"): "built with its table, empty",
    (1, "postings_transaction"): "built with its table, empty",
    (1, "postings_account"): "built with its table, empty",
    (1, "batches_spend_order"): "built with its table, empty",
    (1, "batches_due"): "built with its table, empty",
    (1, "allocations_transaction"): "built with its table, empty",
    (1, "allocations_debit"): "built with its table, empty",
    (1, "holds_open_reference"): "built with its table, empty",
    (1, "holds_due"): "built with its table, empty",
    (1, "outbox_unsent"): "built with its table, empty",
    (1, "outbox_command"): "built with its table, empty",
    (2, "purchases_user"): "built with its table, empty",
    (2, "ledger_purchase_grant_once"): ALREADY_APPLIED,
    (3, "sent_notifications_due"): "built with its table, empty",
    (3, "sent_notifications_user"): "built with its table, empty",
    (3, "purchases_user_email"): ALREADY_APPLIED,
    (4, "ledger_tx_user_daily"): ALREADY_APPLIED,
    (5, "memberships_one_live"): "built with its table, empty",
    (5, "memberships_user"): "built with its table, empty",
    (5, "membership_periods_once"): "built with its table, empty",
    (5, "ledger_membership_grant_once"): ALREADY_APPLIED,
    (6, "fraud_flags_one_open"): "built with its table, empty",
    (6, "fraud_flags_by_time"): "built with its table, empty",
    (6, "purchases_user_status_time"): ALREADY_APPLIED,
    (7, "promo_reservations_code"): "built with its table, empty",
    (7, "promo_reservations_user"): "built with its table, empty",
    (7, "promo_reservations_purchase"): "built with its table, empty",
    (8, "purchase_refunds_time"): "built with its table, empty",
    (8, "ledger_tx_created"): ALREADY_APPLIED,
    (9, "batches_transaction"): ALREADY_APPLIED,
    (9, "allocations_origin"): ALREADY_APPLIED,
    (11, "holds_open_reference"): ALREADY_APPLIED,
    (11, "holds_open_freezes"): ALREADY_APPLIED,
    (11, "batches_purchase"): ALREADY_APPLIED,
}
CREATE_INDEX = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?P<concurrently>CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?P<name>\w+)\s+ON\s+(?:ONLY\s+)?(?P<table>\w+)",
    re.IGNORECASE,
)


def _joined_strings(source: str) -> str:
    """Adjacent string literals joined, so a statement split over lines reads as one."""
    return re.sub(r"\"\s*\n\s*(?:f|r)?\"", "", source)


def plain_indexes_on_large_tables(source: str) -> list[tuple[str, str]]:
    """(index, table) of every non-concurrent CREATE INDEX on a large table."""
    return [
        (found["name"], found["table"])
        for found in CREATE_INDEX.finditer(_joined_strings(source))
        if found["table"].lower() in LARGE_TABLES and not found["concurrently"]
    ]


def _revision_number(path: Path) -> int:
    return int(path.name.split("_", 1)[0])


def _migrations() -> list[Path]:
    return sorted(p for p in VERSIONS.glob("[0-9]*_*.py"))


def test_new_migrations_build_indexes_on_large_tables_concurrently() -> None:
    offenders = [
        f"{path.name}: {index} ON {table}"
        for path in _migrations()
        if _revision_number(path) > LAST_GRANDFATHERED
        for index, table in plain_indexes_on_large_tables(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, (
        "build these with CREATE INDEX CONCURRENTLY inside "
        f"`with op.get_context().autocommit_block():` (docs/decisions.md #43): {offenders}"
    )


def test_concurrent_index_builds_run_outside_the_migration_transaction() -> None:
    """CONCURRENTLY refuses to run inside a transaction block, which Alembic opens."""
    for path in _migrations():
        source = path.read_text(encoding="utf-8")
        if re.search(r"INDEX\s+CONCURRENTLY", _joined_strings(source), re.IGNORECASE):
            assert "autocommit_block()" in source, path.name


def test_grandfathered_list_is_exactly_the_old_plain_indexes() -> None:
    found = {
        (_revision_number(path), index)
        for path in _migrations()
        if _revision_number(path) <= LAST_GRANDFATHERED
        for index, _ in plain_indexes_on_large_tables(path.read_text(encoding="utf-8"))
    }
    assert found == GRANDFATHERED.keys()


def test_the_scan_finds_plain_builds_and_accepts_concurrent_ones() -> None:
    plain = 'op.execute("CREATE INDEX outbox_sent ON outbox (sent_at)")'
    split = 'op.execute(\n    "CREATE UNIQUE INDEX tx_once "\n    "ON ledger_transactions (x)"\n)'
    concurrent = 'op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS o ON outbox (sent_at)")'
    small = 'op.execute("CREATE INDEX packs_active ON credit_packs (active)")'
    assert plain_indexes_on_large_tables(plain) == [("outbox_sent", "outbox")]
    assert plain_indexes_on_large_tables(split) == [("tx_once", "ledger_transactions")]
    assert plain_indexes_on_large_tables(concurrent) == []
    assert plain_indexes_on_large_tables(small) == []
