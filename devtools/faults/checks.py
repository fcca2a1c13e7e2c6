"""The promises checked over one scenario's commands, once the system is quiet.

Exactly-once effect (one stored outcome and the right number of ledger transactions
per command), every outbox event on `payment.events`, a balance chain a deduping
consumer can follow to the database's balance, and the ledger's reconcile invariants.
"""

from collections import Counter

from devtools.faults.context import Context
from devtools.faults.load import Load
from devtools.faults.report import Result
from devtools.faults.topic_reader import Published, parse_event
from services.db import make_engine
from services.ledger.invariant_queries import reconcile

GENERIC_FAILURE = "PAY500"  # a command that broke a handler (apply._failure)


async def check_commands(ctx: Context, load: Load, result: Result) -> None:
    """Every check of the issue, over this scenario's commands; findings are discrepancies."""
    bad = result.discrepancies
    ids = list(load.sent)
    processed = await ctx.db.fetch(
        "SELECT command_id, type, status, error_code, (result->>'released')::bigint AS released "
        "FROM processed_commands WHERE command_id = ANY($1::uuid[])",
        ids,
    )
    if len(processed) != len(ids):
        bad.append(f"processed once: expected {len(ids)} commands, found {len(processed)}")
    codes = Counter(row["error_code"] for row in processed if row["status"] == "rejected")
    result.applied = sum(1 for row in processed if row["status"] == "applied")
    result.rejected = sum(codes.values())
    if codes:
        result.notes.append("rejections: " + ", ".join(f"{c} x{n}" for c, n in codes.most_common()))
    if codes.get(GENERIC_FAILURE):
        bad.append(f"commands that broke a handler ({GENERIC_FAILURE}): {codes[GENERIC_FAILURE]}")

    # Exactly-once effect: the ledger transactions each command wrote.
    tx_counts = {
        row["command_id"]: int(row["n"])
        for row in await ctx.db.fetch(
            "SELECT command_id, count(*) AS n FROM ledger_transactions "
            "WHERE command_id = ANY($1::uuid[]) GROUP BY command_id",
            ids,
        )
    }
    wrong = []
    for row in processed:
        expected = 0
        if row["status"] == "applied":
            expected = 2 if row["type"] == "credits.capture" and (row["released"] or 0) > 0 else 1
        if tx_counts.get(row["command_id"], 0) != expected:
            wrong.append(f"{row['command_id']} ({row['type']}, {row['status']}): expected {expected} "
                         f"ledger transactions, found {tx_counts.get(row['command_id'], 0)}")
    bad += wrong

    # Events: every outbox row of these commands published; count raw vs unique.
    outbox = await ctx.db.fetch(
        "SELECT event_id::text AS event_id, command_id FROM outbox WHERE command_id = ANY($1::uuid[])",
        ids,
    )
    with_events = {row["command_id"] for row in outbox}
    silent = [row["command_id"] for row in processed if row["command_id"] not in with_events]
    if silent:
        bad.append(f"commands without outbox events: {len(silent)} (e.g. {silent[0]})")
    await ctx.events.catch_up()
    wanted = {str(i) for i in ids}
    published = [e for r in ctx.events.records if (e := parse_event(r)) and e.command_id in wanted]
    published_ids = {e.event_id for e in published}
    outbox_ids = {row["event_id"] for row in outbox}
    result.events_raw, result.events_unique = len(published), len(published_ids)
    if missing := outbox_ids - published_ids:
        bad.append(f"events published: {len(missing)} outbox events never reached Kafka "
                   f"(e.g. {next(iter(missing))})")
    if stray := published_ids - outbox_ids:
        bad.append(f"events published: {len(stray)} events on Kafka are in no outbox row")
    bad += await check_balance_chain(ctx, load, published)

    # The ledger's own invariants, with every outbox row sent.
    engine = make_engine(ctx.settings, pool_size=1)
    try:
        bad += [f"reconcile: {d}" for d in await reconcile(engine, require_events_sent=True)]
    finally:
        await engine.dispose()


async def check_balance_chain(ctx: Context, load: Load, published: list[Published]) -> list[str]:
    """Replay `balance.changed` per user, deduped by event id, in partition order.

    Each event's balance must be the previous one plus its deltas, and the last one the
    account's balance in Postgres: what a projecting consumer sees is the ledger.
    """
    by_user: dict[str, list[Published]] = {}
    seen: set[str] = set()
    for event in sorted(published, key=lambda e: (e.partition, e.offset)):
        if event.type == "balance.changed" and event.event_id not in seen:
            seen.add(event.event_id)
            by_user.setdefault(event.user_id, []).append(event)
    accounts = {
        row["user_id"]: (int(row["available"]), int(row["held"]))
        for row in await ctx.db.fetch(
            "SELECT user_id, available, held FROM accounts WHERE user_id = ANY($1::text[])",
            load.users,
        )
    }
    problems: list[str] = []
    for user in load.users:
        available, held = 0, 0
        for event in by_user.get(user, []):
            p = event.payload
            if (available + p["delta"], held + p.get("heldDelta", 0)) != (p["available"], p["held"]):
                problems.append(
                    f"event order: {user} balance.changed {event.event_id} at "
                    f"{event.partition}/{event.offset} does not follow the previous balance "
                    f"({available}/{held} + {p['delta']}/{p.get('heldDelta', 0)} != "
                    f"{p['available']}/{p['held']})"
                )
                break
            available, held = p["available"], p["held"]
        else:
            if (available, held) != accounts.get(user, (0, 0)):
                problems.append(f"events vs ledger: {user} events end at {available}/{held}, "
                                f"the account holds {accounts.get(user, (0, 0))}")
    return problems
