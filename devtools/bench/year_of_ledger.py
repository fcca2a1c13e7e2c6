"""A year of ledger for `bench-reports`, bulk-loaded with set-based SQL in chunks.

Every row is a pure function of its slot number `n` (1..N): type, user, credits and
time come from `hashint8extended(n, seed)`, so the passes below can recompute any slot
(a release's hold, a user's first grant) without reading anything back, and a run is
reproducible. Slots are in time order (`created_at` grows with `n`, a jitter of less
than one slot apart), as an append-only ledger is on disk.

- Each user's first grant is a "forced" slot, one every N/U slots: a purchase,
  membership payment or welcome bonus of >= 2,500 credits, so that no user ends below
  zero. The other slots draw their type with the probabilities left once the forced
  slots are counted, so the whole mix is the target one (as long as U <= 0.16 N).
- A CREDIT_RELEASE is the slot right after a CREDIT_HOLD (2 times in 3), same user,
  credits and hold id, so no user's `held` goes below zero.
- Pass 1 (per chunk, one statement): the transactions, their two postings each (the
  balance trigger checks per statement) and one credit batch per grant.
- Pass 2 (per chunk): purchases (promo reservations and refunds with them) and one
  batch allocation per debit, against the user's first batch. A purchase redeemed
  with a bonus-credits code names that batch's transaction as its promo bonus: a
  stand-in that gives the promo report's "bonus spent" join its real size.
- Then memberships and their periods, the running balances, and VACUUM ANALYZE.
"""

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from devtools.bench.console import console
from devtools.bench.invariants import switch_invariant_triggers

CHUNK = 100_000
DAY_SECONDS = 86_400
YEAR_SECONDS = 365 * DAY_SECONDS

# Target mix of the slots, in per mille (CREDIT_RELEASE: 2/3 of the slots after a hold).
MIX = {
    "CREDIT_PURCHASE": 80,
    "MEMBERSHIP_PAYMENT": 40,
    "PROMO_BONUS": 40,
    "ADJUSTMENT": 10,
    "CREDIT_USAGE": 710,
    "CREDIT_EXPIRY": 50,
    "CREDIT_REFUND": 30,
    "PURCHASE_REVERSAL": 10,
    "CREDIT_HOLD": 30,
}
FORCED = ("CREDIT_PURCHASE", "MEMBERSHIP_PAYMENT", "PROMO_BONUS")
INFLOW = {  # type -> (system account, credit batch source)
    "CREDIT_PURCHASE": ("purchases", "PURCHASED"),
    "MEMBERSHIP_PAYMENT": ("membership", "MEMBERSHIP"),
    "PROMO_BONUS": ("promotions", "PROMOTIONAL"),
    "ADJUSTMENT": ("adjustments", "PROMOTIONAL"),
    "CREDIT_REFUND": ("refunds", "REFUNDED"),
}
OUTFLOW = {"CREDIT_USAGE": "bookings", "CREDIT_EXPIRY": "expired", "PURCHASE_REVERSAL": "purchases"}
# (id, name, credits, bonus credits, price in cents)
PACKS = [
    ("starter", "Starter", 1000, 0, 1999),
    ("standard", "Standard", 2500, 250, 4499),
    ("pro", "Pro", 5000, 750, 7999),
    ("studio", "Studio", 12000, 2000, 14999),
]
# (id, name, credits per period, price in cents)
PLANS = [("basic", "Basic", 1000, 999), ("plus", "Plus", 2500, 2499), ("team", "Team", 6000, 5999)]
# (code, kind, value): percent off, cents off, or bonus credits
PROMOS = [
    (f"BENCH{i:02d}", kind, value)
    for i, (kind, value) in enumerate(
        [("percentage", p) for p in (10, 15, 20, 25, 30, 40, 50)]
        + [("fixed_amount", c) for c in (500, 750, 1000, 1500, 1999)]
        + [("bonus_credits", b) for b in (100, 200, 300, 500, 750, 1000)]
        + [("free_trial", d) for d in (7, 14)]
    )
]
REFUNDED_PERMILLE = 50  # purchases with money refunded
PROMO_PERMILLE = 10  # purchases redeemed through a promo code (not the free-trial ones)


def h(expr: str, seed: int, mod: int) -> str:
    """A uniform integer in [0, mod) from slot `expr`: deterministic, cheap, set-based."""
    return f"((hashint8extended(({expr})::bigint, {seed}) & 9223372036854775807) % {mod})"


def uid(prefix: int, expr: str) -> str:
    """A uuid naming slot `expr` in the namespace `prefix` (1: transactions, 2: commands...)."""
    return f"('{prefix:08x}-0000-4000-8000-' || lpad(to_hex(({expr})::bigint), 12, '0'))::uuid"


def case(key: str, values: dict[str, str], default: str = "NULL") -> str:
    whens = " ".join(f"WHEN {key} = '{k}' THEN {v}" for k, v in values.items())
    return f"CASE {whens} ELSE {default} END"


@dataclass(frozen=True)
class Shape:
    """How many of what, and the thresholds that turn a hash into a type."""

    transactions: int
    users: int
    start_epoch: float  # created_at of slot 1, epoch seconds (UTC)

    @property
    def stride(self) -> int:
        """One forced slot (a user's first grant) every `stride` slots."""
        return max(1, self.transactions // self.users)

    def thresholds(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """Cumulative per-million thresholds: (other slots, forced slots)."""
        forced_share = self.users / self.transactions
        forced_total = sum(MIX[t] for t in FORCED)
        weights = {}
        for t, permille in MIX.items():
            left = permille / 1000 - (forced_share * MIX[t] / forced_total if t in FORCED else 0.0)
            weights[t] = max(0.0, left)
        total = sum(weights.values())
        other, upto = [], 0.0
        for t, w in weights.items():
            upto += w / total * 1_000_000
            other.append((t, round(upto)))
        forced, upto = [], 0.0
        for t in FORCED:
            upto += MIX[t] / forced_total * 1_000_000
            forced.append((t, round(upto)))
        return other, forced


def _pick(draw: str, thresholds: list[tuple[str, int]]) -> str:
    whens = " ".join(f"WHEN {draw} < {limit} THEN '{t}'" for t, limit in thresholds[:-1])
    return f"CASE {whens} ELSE '{thresholds[-1][0]}' END"


def slots_sql(shape: Shape) -> str:
    """`slots`: one row per n in [$1, $2] with every column the passes need."""
    s, users = shape.stride, shape.users
    other, forced = shape.thresholds()

    def forced_at(n: str) -> str:
        return f"(({n}) - 1) % {s} = 0 AND (({n}) - 1) / {s} < {users}"

    def base(n: str) -> str:
        return (
            f"CASE WHEN {forced_at(n)} THEN {_pick(h(n, 1, 1_000_000), forced)} "
            f"ELSE {_pick(h(n, 1, 1_000_000), other)} END"
        )

    def user(n: str) -> str:
        return f"CASE WHEN {forced_at(n)} THEN (({n}) - 1) / {s} ELSE {h(n, 2, users)} END"

    hold_credits = f"1 + {h('n - 1', 3, 20)}"
    # a first grant is a bigger pack or plan than the smallest (>= 2,500 credits)
    pack = f"CASE WHEN {forced_at('n')} THEN 1 + {h('n', 4, len(PACKS) - 1)} ELSE {h('n', 4, len(PACKS))} END"
    plan = f"CASE WHEN {forced_at('n')} THEN 1 + {h('n', 4, len(PLANS) - 1)} ELSE {h('n', 4, len(PLANS))} END"
    promo_draw = h("n", 6, 1000)
    # promo codes usable on packs: every kind but free_trial
    pack_promos = [i for i, (_, kind, _) in enumerate(PROMOS) if kind != "free_trial"]
    promo_index = f"(ARRAY{pack_promos})[1 + {h('n', 8, len(pack_promos))}]"
    price = "(ARRAY[" + ", ".join(str(p[4]) for p in PACKS) + f"])[1 + {pack}]"
    pct = {str(i): str(v) for i, (_, kind, v) in enumerate(PROMOS) if kind == "percentage"}
    off = {str(i): str(v) for i, (_, kind, v) in enumerate(PROMOS) if kind == "fixed_amount"}
    bonus = {str(i): str(v) for i, (_, kind, v) in enumerate(PROMOS) if kind == "bonus_credits"}
    discount = (
        f"CASE WHEN promo IS NULL THEN 0 ELSE coalesce("
        f"price * {case('promo::text', pct)} / 100, "
        f"CASE WHEN {case('promo::text', off)} IS NOT NULL "
        f"THEN least(price - 1, {case('promo::text', off)}) END, 0) END"
    )
    pack_credits = ", ".join(str(p[2] + p[3]) for p in PACKS)
    plan_credits = ", ".join(str(p[2]) for p in PLANS)
    return f"""
    r0 AS (
        SELECT n, (NOT ({forced_at('n')}) AND ({base('n')}) <> 'CREDIT_HOLD'
                   AND NOT ({forced_at('n - 1')}) AND n > 1
                   AND ({base('n - 1')}) = 'CREDIT_HOLD' AND {h('n', 7, 3)} < 2) AS rel
          FROM generate_series($1::bigint, $2::bigint) AS n
    ), raw AS (
        SELECT n,
               CASE WHEN rel THEN 'CREDIT_RELEASE' ELSE {base('n')} END AS type,
               -- a release is its hold's user (the slot before, never a forced one)
               CASE WHEN rel THEN {h('n - 1', 2, users)} ELSE {user('n')} END AS u,
               {h('n', 3, 1_000_000)} AS draw,
               {pack} AS pack, {plan} AS plan, {price} AS price,
               CASE WHEN {promo_draw} >= {REFUNDED_PERMILLE}
                         AND {promo_draw} < {REFUNDED_PERMILLE + PROMO_PERMILLE}
                    THEN {promo_index} END AS promo,
               {promo_draw} < {REFUNDED_PERMILLE} AS refunded,
               to_timestamp({shape.start_epoch} + ((n - 1) + {h('n', 5, 1000)} / 1000.0)
                            * {YEAR_SECONDS / shape.transactions}) AS created_at
          FROM r0
    ), slots AS (
        SELECT raw.*, 'u' || lpad(u::text, 7, '0') AS user_id,
               {discount} AS discount,
               CASE type
                    WHEN 'CREDIT_PURCHASE' THEN (ARRAY[{pack_credits}])[1 + pack]
                    WHEN 'MEMBERSHIP_PAYMENT' THEN (ARRAY[{plan_credits}])[1 + plan]
                    WHEN 'PROMO_BONUS' THEN CASE WHEN {forced_at('n')} THEN 2500 ELSE 100 END + draw % 901
                    WHEN 'ADJUSTMENT' THEN 10 + draw % 491
                    WHEN 'CREDIT_EXPIRY' THEN 1 + draw % 50
                    WHEN 'PURCHASE_REVERSAL' THEN 20 + draw % 101
                    WHEN 'CREDIT_RELEASE' THEN {hold_credits}
                    ELSE 1 + draw % 20 END AS credits,
               {case('promo::text', bonus, '0')} AS promo_bonus,
               {uid(1, 'n')} AS tx_id,
               {uid(5, f'u * {s} + 1')} AS first_batch_id,
               {uid(1, f'u * {s} + 1')} AS first_tx_id,
               {uid(3, "CASE WHEN type = 'CREDIT_RELEASE' THEN n - 1 ELSE n END")} AS hold_id
          FROM raw
    )"""


def pass_one_sql(shape: Shape, system: dict[str, int]) -> str:
    """Transactions, their postings and their credit batches: one statement per chunk."""
    sys_account = case("s.type", {t: str(system[a]) for t, (a, _) in INFLOW.items()}
                       | {t: str(system[a]) for t, a in OUTFLOW.items()})
    sign = case("s.type", dict.fromkeys(INFLOW, "1"), "-1")
    money = "('CREDIT_PURCHASE', 'MEMBERSHIP_PAYMENT')"
    plan_price = "(ARRAY[" + ", ".join(str(p[3]) for p in PLANS) + "])[1 + plan]"
    return f"""
    WITH {slots_sql(shape)},
    tx AS (
        INSERT INTO ledger_transactions (id, type, user_id, credits, amount_minor, currency,
                                         stripe_payment_intent_id, command_id, reference,
                                         hold_id, metadata, created_at)
        SELECT tx_id, type, user_id, credits,
               CASE type WHEN 'CREDIT_PURCHASE' THEN price - discount
                         WHEN 'MEMBERSHIP_PAYMENT' THEN {plan_price} END,
               CASE WHEN type IN {money} THEN 'usd' END,
               CASE WHEN type = 'CREDIT_PURCHASE' THEN 'pi_bench_' || n END,
               {uid(2, 'n')},
               CASE WHEN type IN ('CREDIT_USAGE', 'CREDIT_HOLD', 'CREDIT_RELEASE', 'CREDIT_REFUND')
                    THEN 'booking:' || (n / 3) END,
               CASE WHEN type IN ('CREDIT_HOLD', 'CREDIT_RELEASE') THEN hold_id END,
               CASE WHEN type = 'MEMBERSHIP_PAYMENT'
                    THEN jsonb_build_object('invoiceId', 'in_bench_' || n) ELSE '{{}}'::jsonb END,
               created_at
          FROM slots ORDER BY n
    ), legs AS (
        INSERT INTO postings (transaction_id, account_id, bucket, amount)
        SELECT s.tx_id, leg.account_id, leg.bucket, leg.amount
          FROM slots s
          JOIN accounts a ON a.user_id = s.user_id
         CROSS JOIN LATERAL (VALUES
               (a.id, CASE WHEN s.type = 'CREDIT_RELEASE' THEN 'held' ELSE 'available' END,
                {sign} * s.credits),
               (CASE WHEN s.type IN ('CREDIT_HOLD', 'CREDIT_RELEASE') THEN a.id
                     ELSE {sys_account} END,
                CASE WHEN s.type = 'CREDIT_HOLD' THEN 'held' ELSE 'available' END,
                -{sign} * s.credits)) AS leg(account_id, bucket, amount)
         ORDER BY s.n
    )
    INSERT INTO credit_batches (id, account_id, user_id, source, amount, remaining, acquired_at,
                                expires_at, transaction_id)
    SELECT {uid(5, 's.n')}, a.id, s.user_id,
           {case("s.type", {t: f"'{src}'" for t, (_, src) in INFLOW.items()})},
           s.credits, s.credits, s.created_at, s.created_at + interval '365 days', s.tx_id
      FROM slots s JOIN accounts a ON a.user_id = s.user_id
     WHERE s.type IN ({", ".join(f"'{t}'" for t in INFLOW)})
     ORDER BY s.n
    """


def pass_two_sql(shape: Shape) -> str:
    """Purchases (reservations, refunds) and batch allocations: after every batch exists."""
    codes = f"(ARRAY[{', '.join(uid(8, str(i)) for i in range(len(PROMOS)))}])"
    pack_ids = "(ARRAY[" + ", ".join(f"'{p[0]}'" for p in PACKS) + "])"
    credits = "(ARRAY[" + ", ".join(str(p[2]) for p in PACKS) + "])"
    bonus = "(ARRAY[" + ", ".join(str(p[3]) for p in PACKS) + "])"
    return f"""
    WITH {slots_sql(shape)},
    bought AS (
        SELECT s.*, {uid(4, 's.n')} AS purchase_id, {uid(7, 's.n')} AS reservation_id,
               {codes}[1 + s.promo] AS promo_code_id
          FROM slots s WHERE s.type = 'CREDIT_PURCHASE'
    ), reservations AS (
        INSERT INTO promo_reservations (id, promo_code_id, user_id, target_kind, target_id, status,
                                        discount_minor, currency, bonus_credits, purchase_id,
                                        expires_at, source, created_at, redeemed_at)
        SELECT reservation_id, promo_code_id, user_id, 'pack', {pack_ids}[1 + pack], 'redeemed',
               discount, 'usd', promo_bonus, purchase_id, created_at + interval '30 minutes',
               'checkout', created_at - interval '2 minutes', created_at
          FROM bought WHERE promo IS NOT NULL
    ), purchased AS (
        INSERT INTO purchases (id, user_id, pack_id, credits, bonus_credits, amount_minor, currency,
                               status, payment_intent_id, grant_transaction_id, refunded_minor,
                               list_amount_minor, discount_minor, promo_code, reservation_id,
                               promo_bonus_credits, promo_bonus_expiry_days,
                               promo_bonus_transaction_id, created_at, updated_at)
        SELECT b.purchase_id, b.user_id, {pack_ids}[1 + b.pack], {credits}[1 + b.pack],
               {bonus}[1 + b.pack], b.price - b.discount, 'usd', 'succeeded', 'pi_bench_' || b.n,
               b.tx_id, CASE WHEN b.refunded THEN (b.price - b.discount) / (1 + b.draw % 2) ELSE 0 END,
               b.price, b.discount, c.code, CASE WHEN b.promo IS NOT NULL THEN b.reservation_id END,
               b.promo_bonus, CASE WHEN b.promo_bonus > 0 THEN 90 END,
               CASE WHEN b.promo_bonus > 0 THEN b.first_tx_id END,
               b.created_at - interval '1 minute', b.created_at
          FROM bought b LEFT JOIN promo_codes c ON c.id = b.promo_code_id
    ), refunds AS (
        INSERT INTO purchase_refunds (purchase_id, amount_minor, currency, command_id, created_at)
        SELECT purchase_id, (price - discount) / (1 + draw % 2), 'usd', {uid(9, 'n')},
               least(created_at + interval '3 days', now())
          FROM bought WHERE refunded
    )
    INSERT INTO batch_allocations (transaction_id, batch_id, amount, origin_batch_id,
                                   debit_transaction_id)
    SELECT tx_id, first_batch_id,
           CASE WHEN type = 'CREDIT_RELEASE' THEN credits ELSE -credits END,
           CASE WHEN type = 'CREDIT_RELEASE' THEN first_batch_id END,
           CASE WHEN type = 'CREDIT_RELEASE' THEN {uid(1, 'n - 1')} END
      FROM slots
     WHERE type IN ('CREDIT_USAGE', 'CREDIT_EXPIRY', 'PURCHASE_REVERSAL', 'CREDIT_HOLD',
                    'CREDIT_RELEASE')
     ORDER BY n
    """


CATALOGUE = [
    (
        "INSERT INTO credit_packs (id, name, credits, bonus_credits, price_minor, currency) "
        "SELECT *, 'usd' FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])",
        [list(col) for col in zip(*PACKS, strict=True)],
    ),
    (
        "INSERT INTO membership_plans (id, name, credits_per_period, price_minor, currency, interval) "
        "SELECT *, 'usd', 'month' FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])",
        [list(col) for col in zip(*PLANS, strict=True)],
    ),
]
PROMO_CODES = f"""
    INSERT INTO promo_codes (id, code, kind, percent_off, amount_off_minor, currency,
                             bonus_credits, bonus_expiry_days, trial_days, usage_limit)
    SELECT {uid(8, 'i - 1')}, c.code, c.kind,
           CASE WHEN c.kind = 'percentage' THEN c.value END,
           CASE WHEN c.kind = 'fixed_amount' THEN c.value END,
           CASE WHEN c.kind = 'fixed_amount' THEN 'usd' END,
           CASE WHEN c.kind = 'bonus_credits' THEN c.value END,
           CASE WHEN c.kind = 'bonus_credits' THEN 90 END,
           CASE WHEN c.kind = 'free_trial' THEN c.value END, 100000
      FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS c(code, kind, value, i)
"""
MEMBERSHIPS = f"""
    WITH m AS (
        SELECT i, 'u' || lpad((i * 10)::text, 7, '0') AS user_id,
               (ARRAY[{", ".join(f"'{p[0]}'" for p in PLANS)}])[1 + {h('i', 9, len(PLANS))}] AS plan_id,
               1 + {h('i', 10, 12)} AS periods, {h('i', 11, 1000)} < 200 AS canceled,
               {h('i', 12, 1_000_000)} AS draw
          FROM generate_series(0, $1::bigint - 1) AS i
    ), timed AS (
        -- canceled: the last period ended before now; live: now is in the last period
        SELECT m.*, CASE WHEN canceled
                        THEN now() - interval '1 month' * periods
                             - interval '1 day' * (draw % greatest(1, (12 - periods) * 28 + 1))
                        ELSE now() - interval '1 month' * periods + interval '1 day' * (1 + draw % 27)
                    END AS started
          FROM m
    ), members AS (
        INSERT INTO memberships (id, user_id, plan_id, status, stripe_subscription_id,
                                 current_period_start, current_period_end, canceled_at,
                                 created_at, updated_at)
        SELECT {uid(6, 'i')}, user_id, plan_id, CASE WHEN canceled THEN 'canceled' ELSE 'active' END,
               'sub_bench_' || i, started + interval '1 month' * (periods - 1),
               started + interval '1 month' * periods,
               CASE WHEN canceled THEN started + interval '1 month' * periods END, started, started
          FROM timed
    )
    INSERT INTO membership_periods (invoice_id, membership_id, plan_id, period_start, period_end,
                                    credits, amount_minor, currency, created_at)
    SELECT 'in_bench_m' || t.i || '_' || k, {uid(6, 't.i')}, t.plan_id,
           t.started + interval '1 month' * k, t.started + interval '1 month' * (k + 1),
           p.credits_per_period, p.price_minor, 'usd', t.started + interval '1 month' * k
      FROM timed t JOIN membership_plans p ON p.id = t.plan_id
     CROSS JOIN LATERAL generate_series(0, t.periods - 1) AS k
"""
BALANCES = """
    UPDATE accounts a SET available = b.available, held = b.held
      FROM (SELECT account_id,
                   coalesce(sum(amount) FILTER (WHERE bucket = 'available'), 0) AS available,
                   coalesce(sum(amount) FILTER (WHERE bucket = 'held'), 0) AS held
              FROM postings GROUP BY account_id) b
     WHERE a.id = b.account_id AND a.user_id IS NOT NULL
"""
COUNTS = {
    "ledger_transactions": "SELECT count(*) FROM ledger_transactions",
    "postings": "SELECT count(*) FROM postings",
    "purchases": "SELECT count(*) FROM purchases",
    "memberships": "SELECT count(*) FROM memberships",
    "periods": "SELECT count(*) FROM membership_periods",
    "reservations": "SELECT count(*) FROM promo_reservations",
    "refunds": "SELECT count(*) FROM purchase_refunds",
    "credit_batches": "SELECT count(*) FROM credit_batches",
    "batch_allocations": "SELECT count(*) FROM batch_allocations",
}


async def _chunks(
    conn: asyncpg.Connection, label: str, total: int, statement: str
) -> None:
    columns = (TextColumn(f"  {label} slots"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=total)
        for first in range(1, total + 1, CHUNK):
            last = min(total, first + CHUNK - 1)
            async with conn.transaction():
                await conn.execute(statement, first, last)
            bar.update(task, completed=last)


async def _step(label: str, work: Callable[[], Awaitable[object]]) -> None:
    started = time.perf_counter()
    await work()
    console.print(f"  {label} ({time.perf_counter() - started:.1f}s)")


# The data set is made for the reports' queries, not replayed through the handlers: its
# refunds name no charge and its balances follow the postings, not batch by batch. The
# ledger's invariant triggers (migration 0011) would refuse it; they are off while it
# loads, in this private database only, and the reports never depend on them.
async def load(conn: asyncpg.Connection, shape: Shape) -> dict[str, float]:
    """Load the whole data set; seconds per phase ("load", "vacuum")."""
    await switch_invariant_triggers(conn, enabled=False)
    try:
        return await _load(conn, shape)
    finally:
        await switch_invariant_triggers(conn, enabled=True)


async def _load(conn: asyncpg.Connection, shape: Shape) -> dict[str, float]:
    started = time.perf_counter()
    await conn.execute("SET synchronous_commit = off")
    await conn.execute("SET work_mem = '64MB'")
    for statement, columns in CATALOGUE:
        await conn.execute(statement, *columns)
    await conn.execute(PROMO_CODES, *[list(col) for col in zip(*PROMOS, strict=True)])
    await _step(f"{shape.users:,} user accounts", lambda: conn.execute(
        "INSERT INTO accounts (user_id) SELECT 'u' || lpad(i::text, 7, '0') "
        "FROM generate_series(0, $1::bigint - 1) AS i", shape.users))
    system = {r["system_code"]: r["id"] for r in await conn.fetch(
        "SELECT system_code, id FROM accounts WHERE system_code IS NOT NULL")}
    console.print("[bold]pass 1[/bold]: transactions, postings, credit batches")
    await _chunks(conn, "pass 1", shape.transactions, pass_one_sql(shape, system))
    console.print("[bold]pass 2[/bold]: purchases, reservations, refunds, batch allocations")
    await _chunks(conn, "pass 2", shape.transactions, pass_two_sql(shape))
    await _step(f"{max(1, shape.users // 10):,} memberships and their periods",
                lambda: conn.execute(MEMBERSHIPS, max(1, shape.users // 10)))
    await _step("running balances of the user accounts", lambda: conn.execute(BALANCES))
    loaded = time.perf_counter() - started
    console.print(f"loaded in [bold]{loaded:.1f}s[/bold]")
    vacuum = time.perf_counter()
    # What autovacuum would have done on a live table: statistics, visibility map, hint bits.
    await conn.execute("VACUUM (ANALYZE)")
    await conn.execute("CHECKPOINT")
    vacuumed = time.perf_counter() - vacuum
    console.print(f"VACUUM (ANALYZE) + CHECKPOINT in {vacuumed:.1f}s")
    return {"load": loaded, "vacuum": vacuumed}


async def counts(conn: asyncpg.Connection) -> dict[str, int]:
    return {name: int(await conn.fetchval(sql)) for name, sql in COUNTS.items()}


async def type_mix(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT type, count(*) AS n FROM ledger_transactions GROUP BY type ORDER BY 2 DESC"
    )
    return {r["type"]: int(r["n"]) for r in rows}
