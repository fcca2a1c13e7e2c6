"""Structured JSON logs, one line per event; secrets never reach a log line.

Log calls pass only ids, codes and counts; as a last guard, values that look like
bearer tokens, Stripe secrets or card numbers are masked by the formatter.
"""

import json
import logging
import re
import sys
from datetime import UTC, datetime

_SECRETS = re.compile(
    r"(eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}|(sk|rk|whsec|pk)_(test|live)_\w+|\b\d{13,19}\b)"
)


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object a line. `service` (PAYMENT_SERVICE_NAME) is on every line: the
    platform's log store mixes services, and a query must find this one's lines."""

    def __init__(self, service: str = "payment") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key in ("correlation_id", "command_id", "user_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = str(value)
        if record.exc_info:
            trace = redact(self.formatException(record.exc_info))
            # Head and tail: the head says where it started, the tail what failed.
            entry["error"] = trace if len(trace) <= 4000 else f"{trace[:1500]} … {trace[-2500:]}"
        return json.dumps(entry)


def configure_logging(level: str = "INFO", service: str = "payment") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "faststream", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel("WARNING")
