"""The operator's command line (migrate, reconcile, expire, ...) and the development
toolkit's (`python -m devtools`: the whole `run`, `token`)."""

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import jwt
import pytest
from sqlalchemy import text

from devtools.cli import build_parser as build_devtools_parser
from devtools.processes import free_port
from ops.cli import build_parser
from ops.migrate import migrate
from schemas.commands import (
    SCHEMA_VERSION,
    GrantCredits,
    GrantPayload,
    HoldCredits,
    HoldPayload,
)
from tests.conftest import ROOT, _drop_database, auth, publish, settings_env, wait_processed

JOB_REPORT_KEYS = {"command", "outcome", "counts", "problems", "duration_seconds"}


def cli(
    settings, *args: str, timeout: float = 120, module: str = "ops.cli"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def devtools(settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m devtools` from the repository root, as `make run` and `make token` call it."""
    return cli(settings, *args, timeout=timeout, module="devtools")


def test_migrate_is_idempotent(settings):
    first = cli(settings, "migrate")
    again = cli(settings, "migrate")
    assert first.returncode == 0 and again.returncode == 0, again.stderr
    assert "created: none" in again.stderr


async def test_reconcile_passes_then_names_a_discrepancy(settings, engine, worker, producer, user_id):
    funding = GrantCredits(user_id=user_id, payload=GrantPayload(credits=5, reason="r"))
    await publish(producer, settings, funding)
    await wait_processed(engine, [funding.id])
    clean = await asyncio.to_thread(cli, settings, "reconcile")
    assert clean.returncode == 0, clean.stderr
    assert "0 discrepancies" in clean.stderr
    # Break a running balance on purpose (`held`: the database itself refuses an
    # `available` that disagrees with the batches, see test_database_rules).
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE accounts SET held = held + 1 WHERE user_id = :u"), {"u": user_id}
        )
    try:
        broken = await asyncio.to_thread(cli, settings, "reconcile")
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE accounts SET held = held - 1 WHERE user_id = :u"), {"u": user_id}
            )
    assert broken.returncode == 1
    assert f"user {user_id}" in broken.stderr
    assert "held equals its postings" in broken.stderr
    assert "expected 1, found 0" in broken.stderr


async def test_expire_publishes_expiry_for_due_batches_and_stale_holds(
    settings, engine, worker, producer, user_id
):
    # Far enough ahead that the grant is applied before it: a worker that has just
    # joined its group (this test run alone) may take a few seconds for its first batch.
    soon = datetime.now(UTC) + timedelta(seconds=5)
    short = GrantCredits(
        user_id=user_id, payload=GrantPayload(credits=4, reason="short", expires_at=soon)
    )
    long = GrantCredits(user_id=user_id, payload=GrantPayload(credits=6, reason="long"))
    hold = HoldCredits(
        user_id=user_id, payload=HoldPayload(credits=2, reference="b-expire", ttl_seconds=1)
    )
    await publish(producer, settings, short, long, hold)
    done = await wait_processed(engine, [short.id, long.id, hold.id])
    assert {done[c.id]["status"] for c in (short, long, hold)} == {"applied"}, done
    # Both are due once the short batch's expiry has passed (the hold's 1 s ended before).
    await asyncio.sleep(max(1.5, (soon - datetime.now(UTC)).total_seconds() + 0.5))
    result = await asyncio.to_thread(cli, settings, "expire", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["command"], report["outcome"], report["problems"]) == ("expire", "ok", [])
    # At least this test's short batch and stale hold (others' may be due as well).
    assert report["counts"]["published"] >= 2
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT available, held FROM accounts WHERE user_id = :u"), {"u": user_id}
                )
            ).one()
            kinds = set(
                (
                    await conn.execute(
                        text("SELECT type FROM ledger_transactions WHERE user_id = :u"),
                        {"u": user_id},
                    )
                ).scalars()
            )
        if {"CREDIT_EXPIRY", "CREDIT_RELEASE"} <= kinds:
            break
        await asyncio.sleep(0.1)
    # The hold took 2 of the 4 short-lived credits; the other 2 expire. Held credits do
    # not expire while held: released after their batch expired, they come back as a
    # fresh REFUNDED batch. So 6 (long) + 2 (refunded) remain.
    assert {"CREDIT_EXPIRY", "CREDIT_RELEASE"} <= kinds
    assert (row.available, row.held) == (8, 0)
    async with engine.connect() as conn:
        sources = (
            await conn.execute(
                text(
                    "SELECT source, remaining FROM credit_batches WHERE user_id = :u "
                    "AND status = 'open' ORDER BY expires_at"
                ),
                {"u": user_id},
            )
        ).all()
    assert sorted(sources) == [("PROMOTIONAL", 6), ("REFUNDED", 2)]
    again = await asyncio.to_thread(cli, settings, "expire")
    assert again.returncode == 0
    assert "commands published" in again.stderr and again.stdout == ""


@pytest.mark.timeout(180)
def test_run_starts_the_stack_serves_the_api_and_stops_on_ctrl_c(settings):
    port = free_port()
    own = settings.model_copy(
        update={"payment_service_port": port, "topic_prefix": f"run-{uuid.uuid4().hex[:6]}-"}
    )
    env = settings_env(own)
    run_dir = ROOT / "test-artifacts" / f"run-{port}"
    run_dir.mkdir(parents=True, exist_ok=True)
    env["PIKA_RUN_DIR"] = str(run_dir)
    output_file = run_dir / "run.out"
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools", "run"],
        env=env,
        cwd=ROOT,
        stdout=output_file.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}/payment"
        deadline = time.monotonic() + 90
        balance = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/ready", timeout=2)
                if ready.status_code == 200:
                    balance = httpx.get(
                        f"{base}/credits/balance", headers=auth("demo-alice"), timeout=5
                    )
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert balance is not None, output_file.read_text()[-3000:]
        assert balance.status_code == 200
        assert balance.json()["total"] == 57, "seeded: 50 + 10 granted, 3 charged"
        plans = {p["id"]: p for p in httpx.get(f"{base}/memberships/", timeout=5).json()}
        assert {"plan_basic", "plan_plus", "plan_unlimited"} <= set(plans), "seeded plans"
        assert plans["plan_plus"]["rollover"] == "capped:4"
        welcome = httpx.post(f"{base}/promo-codes/validate", json={"code": "welcome10",
                             "packId": "pack_50"}, headers=auth("demo-new"), timeout=5)
        assert welcome.status_code == 200 and welcome.json()["finalPrice"] == 4050, welcome.text
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = output_file.read_text()
    assert process.returncode == 0, output
    assert f"{base}/docs" in output and f"{base}/asyncapi" in output
    assert "stopped" in output


def test_token_mints_only_in_dev_mode_and_its_token_is_accepted(settings, ingress):
    refused = devtools(settings, "token", "--sub", "ops", "--roles", "admin")
    assert refused.returncode != 0 and refused.stdout == ""
    assert "PAYMENT_DEV_MODE" in refused.stderr
    dev = settings.model_copy(update={"payment_dev_mode": True})
    too_long = devtools(dev, "token", "--sub", "ops", "--ttl",
                        str(settings.payment_jwt_max_lifetime_seconds + 1))
    assert too_long.returncode != 0 and "PAYMENT_JWT_MAX_LIFETIME_SECONDS" in too_long.stderr
    minted = devtools(dev, "token", "--sub", "ops", "--roles", "admin")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["aud"], claims["iss"], claims["sub"], claims["roles"]) == (
        settings.payment_jwt_audience, settings.payment_jwt_issuer, "ops", ["admin"]
    )
    assert claims["exp"] - claims["iat"] == 3600
    response = httpx.get(f"{ingress.url}/payment/credits/balance?userId=demo-x",
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text


def test_version_names_the_installed_distribution_and_the_command_schema(settings):
    from importlib.metadata import version

    shown = cli(settings, "--version", timeout=30)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == (
        f"pika-payment {version('pika-payment')} (command schema {SCHEMA_VERSION})"
    )


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [choices] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(choices.choices)


@pytest.mark.parametrize("make_parser", [build_parser, build_devtools_parser],
                         ids=["pika-payment", "devtools"])
def test_every_command_and_flag_has_help_text(make_parser):
    parser = make_parser()
    lacking = [a.dest for a in parser._actions if not a.help]
    for name, command in _subcommands(parser).items():
        lacking += [f"{name} {a.option_strings or a.dest}" for a in command._actions if not a.help]
        assert command.description, f"{name} has no description"
    assert lacking == []


def test_the_job_commands_print_json():
    assert {"expire", "reconcile", "remind"} <= {
        name for name, command in _subcommands(build_parser()).items()
        if any("--json" in a.option_strings for a in command._actions)
    }


def test_the_product_command_line_has_no_development_command():
    """Local stack, seed, tokens, benchmarks, faults and the clients' generated files live in
    `python -m devtools` only."""
    product, toolkit = set(_subcommands(build_parser())), set(_subcommands(build_devtools_parser()))
    assert toolkit == {"run", "seed", "token", "bench", "bench-http", "bench-reports", "bench-sockets",
                       "faults", "ts-types", "client-contracts"}
    assert not product & toolkit


@pytest.mark.parametrize(("module", "prog", "make_parser"), [
    ("ops.cli", "pika-payment", build_parser),
    ("devtools", "python -m devtools", build_devtools_parser),
], ids=["pika-payment", "devtools"])
def test_help_of_each_command_runs_and_describes_its_flags(settings, module, prog, make_parser):
    for name, command in _subcommands(make_parser()).items():
        shown = cli(settings, name, "--help", timeout=30, module=module)
        assert shown.returncode == 0, (name, shown.stderr)
        assert shown.stdout.startswith(f"usage: {prog} {name}")
        for action in command._actions:
            for flag in action.option_strings:
                assert flag in shown.stdout, (name, flag)


@pytest.fixture
def own_database(services, settings):
    """A migrated database of this test's own: its discrepancy is seen by nobody else."""
    name = f"{services.database_name}_cli_{uuid.uuid4().hex[:6]}"
    own = settings.model_copy(
        update={"database_url": f"{services.database_admin_url.rsplit('/', 1)[0]}/{name}"}
    )
    migrate(own)
    yield own
    asyncio.run(_drop_database(services.database_admin_url, name))


def _sql(settings, statement: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(settings.plain_database_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


def _json_report(result: subprocess.CompletedProcess[str]) -> dict:
    lines = result.stdout.splitlines()
    assert len(lines) == 1, f"one JSON object on stdout, not: {result.stdout!r}"
    report = json.loads(lines[0])
    assert set(report) >= JOB_REPORT_KEYS, report
    return report


def test_reconcile_json_reports_and_exits_non_zero_on_a_seeded_discrepancy(own_database):
    clean = cli(own_database, "reconcile", "--json")
    assert clean.returncode == 0, clean.stderr
    report = _json_report(clean)
    assert (report["outcome"], report["counts"], report["problems"]) == (
        "ok", {"discrepancies": 0}, []
    )
    assert report["duration_seconds"] >= 0
    _sql(own_database, "INSERT INTO accounts (user_id, held) VALUES ('cli-broken', 1)")
    broken = cli(own_database, "reconcile", "--json")
    assert broken.returncode == 1, broken.stderr
    report = _json_report(broken)
    assert report["outcome"] == "discrepancies"
    assert report["counts"]["discrepancies"] == len(report["problems"]) >= 1
    assert any("user cli-broken" in p and "held" in p for p in report["problems"])
    human = cli(own_database, "reconcile")
    assert human.returncode == 1 and human.stdout == ""
    assert "user cli-broken" in human.stderr


def test_reconcile_stripe_dry_run_json_lists_stripe_and_still_checks_the_ledger(own_database):
    result = cli(own_database, "reconcile", "--stripe", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    report = _json_report(result)
    # This database has no purchases, so no Stripe payment is ours to confirm.
    assert report["stripe"] == [] and report["counts"]["stripe_missing"] == 0
    assert report["counts"]["discrepancies"] == 0


def test_remind_and_expire_json_on_an_empty_ledger(own_database):
    remind = cli(own_database, "remind", "--json")
    assert remind.returncode == 0, remind.stderr
    report = _json_report(remind)
    assert (report["command"], report["counts"]) == ("remind", {"reminders": 0, "batches": 0})
    expire = cli(own_database, "expire", "--json")
    assert expire.returncode == 0, expire.stderr
    assert _json_report(expire)["counts"] == {"published": 0}
