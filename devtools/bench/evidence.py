"""Evidence for the bench's payment-zone commands, recorded before any clock starts.

Grants are payment-zone commands: the worker applies one only when its producer
recorded evidence for exactly that command (workers/trust.py), as an admin's request
does through the ingress. The grant and mixed phases record it in bulk up front and
publish to the internal command topic, so the measured rate is the worker's, not the
cost of an admin request.
"""

from collections.abc import Sequence

from devtools.bench.sql import connect
from schemas.commands import CommandEnvelope
from services.evidence.store import RECORD_ARRAYS, RECORD_COLUMNS, evidence_rows
from services.evidence.zones import Evidence
from services.settings import Settings

BENCH_EVIDENCE = Evidence("admin_request", "bench", "pika-payment bench")


async def record_evidence(settings: Settings, commands: Sequence[CommandEnvelope]) -> int:
    """Evidence rows for the payment-zone commands among `commands`; how many."""
    rows = evidence_rows((c, BENCH_EVIDENCE) for c in commands)
    if rows:
        async with connect(settings) as conn:
            await conn.execute(RECORD_ARRAYS, *([row[c] for row in rows] for c in RECORD_COLUMNS))
    return len(rows)
