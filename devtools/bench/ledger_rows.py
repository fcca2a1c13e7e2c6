"""The rows the ledger writes for applied commands, written through plain asyncpg.

Everything here is the ledger's own code: the stores' statements and row builders,
the handlers' outcomes (results and events, from services/ledger/events.py) and
apply's processed/outbox rows. Only the driver differs (asyncpg without SQLAlchemy),
so funding writes what the worker would and baseline (b) measures the worker's
statements without the worker's per-command machinery.
"""

import uuid
from collections.abc import Sequence

import asyncpg

from devtools.bench.sql import adjust_balances, execute, fetch
from schemas.commands import CommandEnvelope, command_fingerprint
from services.ledger.apply import outbox_of, processed_of
from services.ledger.command_store import CLAIM_COMMANDS, RECORD_PROCESSED, claim_rows, processed_rows
from services.ledger.context import Outcome
from services.ledger.journal_store import INSERT_POSTINGS, INSERT_TRANSACTIONS, posting_rows, transaction_rows
from services.ledger.models import TransactionDraft
from services.ledger.outbox_store import INSERT_OUTBOX, outbox_rows


async def claim(conn: asyncpg.Connection, commands: Sequence[CommandEnvelope]) -> set[uuid.UUID]:
    """Claim the command ids as the worker does; returns those not processed before."""
    rows = claim_rows(
        [(c.id, c.type, c.user_id, command_fingerprint(c)) for c in commands]  # type: ignore[attr-defined]
    )
    return {row[0] for row in await fetch(conn, CLAIM_COMMANDS, rows)}


async def insert_transactions(conn: asyncpg.Connection, drafts: Sequence[TransactionDraft]) -> None:
    await execute(conn, INSERT_TRANSACTIONS, transaction_rows(drafts))


async def write(
    conn: asyncpg.Connection, drafts: Sequence[TransactionDraft], deltas: dict[int, tuple[int, int]]
) -> dict[int, tuple[int, int]]:
    """Move balances by `deltas` and post `drafts` with the balances after (the handlers' `write`)."""
    after = await adjust_balances(conn, deltas)
    rows = posting_rows(drafts, after)
    if rows is not None:
        await execute(conn, INSERT_POSTINGS, rows)
    return after


async def record(conn: asyncpg.Connection, outcomes: Sequence[Outcome], topic: str) -> None:
    """Store the outcomes and put their events in the outbox, as apply does."""
    await execute(conn, RECORD_PROCESSED, processed_rows(processed_of(outcomes)))
    await execute(conn, INSERT_OUTBOX, outbox_rows(outbox_of(outcomes, topic)))
