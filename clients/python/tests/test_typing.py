"""mypy (strict) knows a handler's event type from the model it is registered for."""

import sys
from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api", reason="mypy is not installed")

PROGRAM = """\
from pika_payment_client import InMemoryDedupe, PaymentEvents
from pika_payment_client.broker import BrokerSettings
from pika_payment_client.contracts.events import BalanceChanged, CreditsCharged, EventEnvelope

events = PaymentEvents(BrokerSettings(bootstrap_servers="localhost:9092"), group_id="g",
                       dedupe=InMemoryDedupe())


@events.on(BalanceChanged)
async def show(event: BalanceChanged) -> None:
    print(event.user_id, event.payload.available, event.payload.held)


@events.on(BalanceChanged)
async def broader(event: EventEnvelope) -> None:
    print(event.id)


@events.on_any
async def everything(event: EventEnvelope) -> None:
    print(event.id)


@events.on(BalanceChanged)  # line 24: a handler of another model
async def wrong(event: CreditsCharged) -> None:
    print(event.payload.credits)


@events.on(BalanceChanged)
async def typo(event: BalanceChanged) -> None:
    print(event.payload.availabel)  # line 31: no such field
"""


def test_mypy_strict_checks_handlers_against_their_model(tmp_path: Path) -> None:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    out, err, status = api.run([
        "--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), "--config-file", "",
        "--python-executable", sys.executable, "--no-error-summary", str(program),
    ])
    errors = sorted(line.split(":")[1] for line in out.splitlines() if ": error:" in line)
    assert status == 1 and errors == ["24", "31"], out + err
    assert "CreditsCharged" in out and "availabel" in out, out
