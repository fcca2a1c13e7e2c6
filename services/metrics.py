"""Prometheus metrics of every process (one registry; each process exposes its own)."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "payment_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "payment_http_request_seconds", "HTTP request latency", ["method", "route"]
)
COMMANDS = Counter(
    "payment_commands_total", "Commands handled by the ledger worker", ["type", "status"]
)
COMMANDS_REFUSED = Counter(
    "payment_commands_refused_total",
    "Commands the worker refused to apply: a payment-zone type on the public topic "
    "(reason=public_topic) or without fitting evidence (reason=evidence). Alert on any.",
    ["type", "reason"],
)
COMMAND_DUPLICATES = Counter("payment_command_duplicates_total", "Redelivered commands ignored")
DEAD_LETTERS = Counter("payment_dead_letters_total", "Messages sent to a DLQ", ["topic"])
BATCH_SIZE = Histogram(
    "payment_batch_size", "Commands per ledger batch", buckets=(1, 5, 10, 50, 100, 250, 500, 1000)
)
BATCH_LATENCY = Histogram("payment_batch_apply_seconds", "Apply + commit time of one batch")
BATCH_RETRIES = Counter("payment_batch_retries_total", "Batches retried after a transient error")
OUTBOX_PUBLISHED = Counter("payment_outbox_published_total", "Events published by the relay")
OUTBOX_LAG = Gauge("payment_outbox_lag_seconds", "Age of the oldest unsent outbox row")
CONSUMER_LAG = Gauge("payment_consumer_lag", "Messages behind the log end", ["partition"])
WEBHOOK_VERIFY_FAILED = Counter(
    "payment_webhook_verifications_failed_total", "Stripe webhooks with a bad signature"
)
NOTIFICATIONS = Counter(
    "payment_notifications_total",
    "Emails by template and outcome (sent, skipped, retried, failed, duplicate)",
    ["template", "outcome"],
)
READINESS_CHECKS = Counter(
    "payment_readiness_checks_total",
    "Backend checks run by /payment/ready (answers within a second reuse the last one)",
)
DB_ROUND_TRIPS = Counter(
    "payment_db_round_trips_total",
    "Round trips to Postgres by kind (statement, begin, commit, rollback, ping, listen); counted "
    "by the ingress (ingress.db_metrics and its read pool)",
    ["kind"],
)
