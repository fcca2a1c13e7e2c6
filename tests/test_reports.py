"""Reports computed on a seeded month with known answers, compared figure by figure.

The scenario runs through the ledger worker's own code (`apply_commands`) on a
database of its own, so no other test's data is in the figures. Each step's rows are
then moved to the scenario's day: the ledger is append-only, so the time machine
turns the append-only triggers off for that one statement (`session_replication_role`),
which only a test may do.
"""

import asyncio
import csv
import io
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ops.migrate import migrate
from schemas.commands import (
    ChargeCredits,
    ChargePayload,
    CommandEnvelope,
    ConfirmPurchase,
    ConfirmPurchasePayload,
    ExpireCredits,
    ExpirePayload,
    GrantCredits,
    GrantMembershipPeriod,
    GrantPayload,
    MembershipInvoicePayload,
    RevokePurchase,
    RevokePurchasePayload,
    SubscriptionStatePayload,
    SyncMembership,
)
from services.bootstrap import command_registry
from services.db import make_engine
from services.ledger.apply import apply_commands
from services.ledger.invariant_queries import reconcile
from services.promos import codes, reservations
from services.promos.rules import Target
from services.reports import queries
from services.reports.csv_export import to_csv
from services.settings import Settings
from tests.conftest import Services, auth, make_settings

REGISTRY = command_registry()  # built once, as the ledger worker does at start


def day(d: int, month: int = 11) -> datetime:
    return datetime(2026, month, d, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def scenario_db(services: Services) -> AsyncIterator[tuple[AsyncEngine, Settings]]:
    own = Services(services.database_admin_url, f"{services.database_name}_reports",
                   services.redis_url, services.kafka, services.mode)
    configured = make_settings(own)
    await asyncio.to_thread(migrate, configured)
    engine = make_engine(configured, pool_size=2)
    try:
        yield engine, configured
    finally:
        await engine.dispose()
        import asyncpg

        conn = await asyncpg.connect(services.database_admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{own.database_name}" WITH (FORCE)')
        finally:
            await conn.close()


class Month:
    """Applies the scenario's commands and dates their rows."""

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine, self.settings = engine, settings

    async def run(self, when: datetime, command: CommandEnvelope) -> dict:
        report = await apply_commands(self.engine, self.settings, [command], REGISTRY)
        (outcome,) = report.outcomes
        assert outcome.status == "applied", outcome.result
        async with self.engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            for table in ("ledger_transactions", "purchase_refunds"):
                await conn.execute(text(f"UPDATE {table} SET created_at = :t WHERE command_id = :c"),
                                   {"t": when, "c": command.id})
            await conn.execute(
                text("UPDATE promo_reservations SET redeemed_at = :t WHERE redeemed_at IS NOT NULL "
                     "AND redeemed_at > now() - interval '1 minute'"), {"t": when})
        return outcome.result

    async def sql(self, statement: str, **params) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(statement), params)


async def seed_month(engine: AsyncEngine, settings: Settings) -> None:
    m = Month(engine, settings)
    await m.sql("INSERT INTO credit_packs (id, name, credits, bonus_credits, price_minor, currency) "
                "VALUES ('pack_r', 'Report pack', 20, 3, 1800, 'usd')")
    await m.sql("INSERT INTO membership_plans (id, name, price_minor, currency, interval, "
                "credits_per_period, rollover) VALUES ('plan_r', 'Report plan', 2900, 'usd', "
                "'month', 30, 'none')")
    for user, sub in (("r-c", "sub_c"), ("r-d", "sub_d")):
        await m.sql("INSERT INTO memberships (id, user_id, plan_id, status, stripe_subscription_id) "
                    "VALUES (:id, :u, 'plan_r', 'incomplete', :s)", id=uuid.uuid4(), u=user, s=sub)

    def period(user: str, sub: str, start: datetime, end: datetime, invoice: str) -> GrantMembershipPeriod:
        return GrantMembershipPeriod(user_id=user, payload=MembershipInvoicePayload(
            subscription_id=sub, stripe_event_id=f"evt_{invoice}", invoice_id=invoice,
            period_start=start, period_end=end, amount_paid=2900, currency="usd"))

    async def bought(user: str, when: datetime, amount: int = 1800, **promo) -> str:
        purchase_id, intent = uuid.uuid4(), f"pi_{uuid.uuid4().hex[:10]}"
        await m.sql(
            "INSERT INTO purchases (id, user_id, pack_id, credits, bonus_credits, amount_minor, "
            "currency, status, payment_intent_id, list_amount_minor, discount_minor, promo_code, "
            "reservation_id) VALUES (:id, :u, 'pack_r', 20, 3, :amount, 'usd', 'pending', :pi, 1800, "
            ":discount, :code, :reservation)",
            id=purchase_id, u=user, amount=amount, pi=intent, discount=promo.get("discount", 0),
            code=promo.get("code"), reservation=promo.get("reservation"))
        await m.run(when, ConfirmPurchase(user_id=user, payload=ConfirmPurchasePayload(
            payment_intent_id=intent, amount_received=amount, currency="usd",
            stripe_event_id=f"evt_{intent}")))
        return intent

    # October: D's first period (before the November range: the opening liability).
    await m.run(day(10, 10), period("r-d", "sub_d", day(10, 10), day(10, 11), "in_d1"))
    a_intent = await bought("r-a", day(2))
    async with engine.begin() as conn:
        promo = await codes.create_code(conn, {
            "code": "REPORT25", "kind": "percentage", "percent_off": 25, "amount_off": None,
            "currency": None, "bonus_credits": None, "bonus_expiry_days": None, "trial_days": None,
            "usage_limit": None, "per_user_limit": 1, "new_customers_only": False,
            "allowed_users": None, "valid_from": None, "valid_until": None, "minimum_amount": None,
            "pack_ids": None, "plan_ids": None, "active": True})
        reservation_id = uuid.uuid4()
        await reservations.reserve(conn, promo["code"], Target("pack", "pack_r", 1800, "usd"), "r-b",
                                   reservation_id=reservation_id, ttl=timedelta(hours=1),
                                   now=datetime.now(UTC))
    await bought("r-b", day(3), amount=1350, discount=450, code="REPORT25",
                 reservation=reservation_id)
    await m.run(day(5), ChargeCredits(user_id="r-a", payload=ChargePayload(credits=5, reference="b1")))
    await m.run(day(10), period("r-c", "sub_c", day(10), day(10, 12), "in_c1"))
    await m.run(day(10), period("r-d", "sub_d", day(10), day(10, 12), "in_d2"))  # expires D's 30
    grant = await m.run(day(12), GrantCredits(user_id="r-b", payload=GrantPayload(
        credits=10, reason="goodwill", expires_at=datetime.now(UTC) + timedelta(seconds=2))))
    await asyncio.sleep(2.2)
    await m.run(day(20), ExpireCredits(user_id="r-b", payload=ExpirePayload(
        batch_id=uuid.UUID(grant["batchId"]))))
    await m.run(day(15), RevokePurchase(user_id="r-a", payload=RevokePurchasePayload(
        payment_intent_id=a_intent, amount_refunded=900, currency="usd", stripe_event_id="evt_rf")))
    await m.run(day(25), SyncMembership(user_id="r-c", payload=SubscriptionStatePayload(
        subscription_id="sub_c", stripe_event_id="evt_del", status="canceled",
        canceled_at=day(25), ended_at=day(25), stripe_created=int(time.time()))))
    await m.run(day(1, 12), ChargeCredits(user_id="r-b", payload=ChargePayload(credits=4, reference="b2")))


@pytest.fixture(scope="module")
async def month(scenario_db) -> tuple[AsyncEngine, Settings]:
    engine, configured = scenario_db
    await seed_month(engine, configured)
    return engine, configured


async def report(engine: AsyncEngine, build, *args):
    async with engine.begin() as conn:
        return await build(conn, *args)


NOVEMBER = queries.Range(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC))


async def test_revenue_by_day_and_month_from_the_ledger_and_refunds(month):
    engine, _ = month
    daily = await report(engine, queries.revenue, NOVEMBER, "usd")
    assert len(daily["buckets"]) == 31
    by_day = {b["start"].day: b for b in daily["buckets"] if (b["start"].month == 11 and b["gross"])
              or b["refunds"]}
    assert {d: (b["packs"], b["memberships"], b["refunds"]) for d, b in by_day.items()} == {
        2: (1800, 0, 0), 3: (1350, 0, 0), 10: (0, 5800, 0), 15: (0, 0, 900)}
    assert daily["totals"] == {"gross": 8950, "refunds": 900, "net": 8050, "packs": 3150,
                               "memberships": 5800}
    monthly = await report(engine, queries.revenue, queries.Range(
        datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "month"), "usd")
    assert [(b["start"].month, b["gross"], b["net"]) for b in monthly["buckets"]] == [
        (10, 2900, 2900), (11, 8950, 8050), (12, 0, 0)]
    assert (await report(engine, queries.revenue, NOVEMBER, "eur"))["totals"]["gross"] == 0


async def test_credit_flows_and_the_liability_equal_the_balances_replayed_to_each_day(month):
    engine, _ = month
    credits = await report(engine, queries.credits, NOVEMBER)
    assert credits["opening_liability"] == 30, "D's October credits"
    assert credits["totals"] == {
        "issued_purchased": 40, "issued_membership": 60, "issued_promotional": 16,
        "issued_refunded": 0, "consumed": 9, "expired": 40, "clawed_back": 11}
    ends = {b["start"].day if b["start"].month == 11 else 100 + b["start"].day: b["liability"]
            for b in credits["buckets"]}
    assert (ends[1], ends[2], ends[3], ends[5], ends[10], ends[12], ends[15], ends[20], ends[30],
            ends[101]) == (30, 53, 76, 71, 101, 111, 100, 90, 90, 86)
    async with engine.connect() as conn:
        for bucket in credits["buckets"]:
            end = bucket["start"] + timedelta(days=1)
            replayed = await conn.scalar(text(
                "SELECT coalesce(sum(p.amount), 0) FROM postings p "
                "JOIN accounts a ON a.id = p.account_id AND a.system_code IS NULL "
                "JOIN ledger_transactions t ON t.id = p.transaction_id WHERE t.created_at < :end"),
                {"end": end})
            assert bucket["liability"] == replayed, bucket["start"]
    assert await reconcile(engine) == []


async def test_packs_churn_and_promo_codes(month):
    engine, _ = month
    packs = await report(engine, queries.packs, NOVEMBER, "usd")
    assert packs["items"] == [{"pack_id": "pack_r", "name": "Report pack", "purchases": 2,
                               "revenue": 3150, "refunded": 900, "net": 2250, "credits": 46}]
    churn = await report(engine, queries.churn, queries.Range(
        datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), "month"))
    assert [(b["start"].month, b["at_start"], b["new"], b["canceled"], b["churn_rate_bp"])
            for b in churn["buckets"]] == [(10, 0, 1, 0, 0), (11, 1, 1, 1, 10000), (12, 1, 0, 0, 0)]
    promos = await report(engine, queries.promo_codes, NOVEMBER)
    (item,) = promos["items"]
    assert (item["code"], item["redemptions"], item["discount_given"], item["revenue"]) == (
        "REPORT25", 1, 450, 1350)


async def test_report_endpoints_answer_json_and_csv_for_admins_only(http):
    admin = auth("finance", "admin")
    for name in ("revenue", "credits", "packs", "churn", "promo-codes"):
        answer = await http.get(f"/payment/reports/{name}", headers=admin)
        assert answer.status_code == 200, (name, answer.text)
        assert {"from", "to", "granularity"} <= answer.json().keys()
        as_csv = await http.get(f"/payment/reports/{name}?format=csv", headers=admin)
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        accept = await http.get(f"/payment/reports/{name}", headers={**admin, "Accept": "text/csv"})
        assert accept.text == as_csv.text
        assert (await http.get(f"/payment/reports/{name}", headers=auth("u-x"))).status_code == 403
    daily = await http.get("/payment/reports/revenue?from=2026-11-01&to=2026-11-04", headers=admin)
    assert [b["start"] for b in daily.json()["buckets"]] == [
        "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", "2026-11-03T00:00:00Z"]
    lines = (await http.get("/payment/reports/revenue?from=2026-11-01&to=2026-11-04&format=csv",
                            headers=admin)).text.splitlines()
    assert lines[0] == "start,gross,refunds,net,packs,memberships" and len(lines) == 4
    for bad in ("from=2026-11-05&to=2026-11-01", "from=2020-01-01&to=2026-01-01",
                "granularity=week", "currency=dollars", "format=xml", "to=0001-01-01"):
        refused = await http.get(f"/payment/reports/revenue?{bad}", headers=admin)
        assert refused.status_code in (400, 422) and refused.json()["code"] == "PAY007", bad


FORMULA = "=cmd|' /C calc'!A0"


async def test_csv_escapes_formula_text_and_keeps_negative_amounts_numbers(month):
    """A pack named like a formula reaches the packs report; a refund day's net is < 0."""
    engine, _ = month
    async with engine.connect() as conn:
        renamed = await conn.begin()  # rolled back: the month's figures stay as they are
        await conn.execute(text("UPDATE credit_packs SET name = :n WHERE id = 'pack_r'"),
                           {"n": FORMULA})
        packs = await queries.packs(conn, NOVEMBER, "usd")
        await renamed.rollback()
    (row,) = csv.DictReader(io.StringIO(to_csv(packs)))
    assert row["name"] == "'" + FORMULA, "shown as text, never run"
    assert int(row["net"]) == 2250

    revenue = await report(engine, queries.revenue, NOVEMBER, "usd")
    refund_day = next(r for r in csv.DictReader(io.StringIO(to_csv(revenue)))
                      if r["start"].startswith("2026-11-15"))
    assert int(refund_day["net"]) == -900, "a negative amount is a number, not escaped"


def test_every_formula_start_is_escaped_in_text_cells_only():
    texts = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "plain", "", "1-2"]
    report = {"items": [{"code": t, "amount": -5} for t in texts]}
    rows = list(csv.reader(io.StringIO(to_csv(report))))
    assert rows[0] == ["code", "amount"]
    assert [r[0] for r in rows[1:]] == [
        "'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx", "plain", "", "1-2"]
    assert [int(r[1]) for r in rows[1:]] == [-5] * len(texts), "int columns are never text"
