"""The operator's command line: migrate, reconcile, expire and the whole `run`."""

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from sqlalchemy import text

from ops.stack import free_port
from schemas.commands import GrantCredits, GrantPayload, HoldCredits, HoldPayload
from tests.conftest import ROOT, auth, publish, settings_env, wait_processed


def cli(settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
    soon = datetime.now(UTC) + timedelta(seconds=1)
    short = GrantCredits(
        user_id=user_id, payload=GrantPayload(credits=4, reason="short", expires_at=soon)
    )
    long = GrantCredits(user_id=user_id, payload=GrantPayload(credits=6, reason="long"))
    hold = HoldCredits(
        user_id=user_id, payload=HoldPayload(credits=2, reference="b-expire", ttl_seconds=1)
    )
    await publish(producer, settings, short, long, hold)
    done = await wait_processed(engine, [short.id, long.id, hold.id])
    assert done[hold.id]["status"] == "applied"
    await asyncio.sleep(1.5)
    result = await asyncio.to_thread(cli, settings, "expire")
    assert result.returncode == 0, result.stderr
    assert "commands published" in result.stderr
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
        [sys.executable, "-m", "ops.cli", "run"],
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
    refused = cli(settings, "token", "--sub", "ops", "--roles", "admin")
    assert refused.returncode != 0 and refused.stdout == ""
    assert "PAYMENT_DEV_MODE" in refused.stderr
    dev = settings.model_copy(update={"payment_dev_mode": True})
    too_long = cli(dev, "token", "--sub", "ops", "--ttl", str(settings.payment_jwt_max_lifetime_seconds + 1))
    assert too_long.returncode != 0 and "PAYMENT_JWT_MAX_LIFETIME_SECONDS" in too_long.stderr
    minted = cli(dev, "token", "--sub", "ops", "--roles", "admin")
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
