"""`python -m devtools bench-sockets`, tiny: a real ingress, worker, relay and broker of its
own, 20 sockets over 5 users. It fails when a socket misses, repeats or gets another
user's `balance.changed` (the command exits 1), or when the report loses its figures."""

import subprocess
import sys

from tests.conftest import ROOT, settings_env


def test_a_tiny_run_delivers_each_event_once_to_every_socket_of_its_user(settings):
    result = subprocess.run(
        [sys.executable, "-m", "devtools", "bench-sockets", "--sockets", "20", "--users", "5",
         "--peak", "200", "--seconds", "2"],
        env={**settings_env(settings), "COLUMNS": "220"},  # one table row per line
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.stdout.splitlines() if line.count("│") >= 3}
    assert rows["sockets connected"] == "20 / 20"
    assert rows["events"] == "200"  # half of --peak for --seconds
    assert rows["deliveries expected"] == rows["deliveries received"] == "800"
    for measure in ("Kafka -> socket p99", "ingress CPU per event", "ingress RSS", "bench CPU"):
        assert rows[measure] not in ("", "n/a"), measure
