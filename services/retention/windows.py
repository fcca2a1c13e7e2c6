"""How long a dedupe record must be remembered: longer than Kafka can redeliver its message.

Two consumers deduplicate by a record in Postgres, and each record must outlive every
copy of its message in Kafka:

* the ledger worker, by command id (`processed_commands`). If the id of a command is
  pruned while its message can still be read from its topic (a consumer group reset to
  the earliest offset, offsets expired after a long outage, a partition reassigned and
  re-read), the message is evaluated again: a charge that was rejected and retried by
  its client under a new id would now also go through, charged twice;
* the notify worker, by event id and template (`sent_notifications`). If that claim is
  pruned while `payment.events` still holds its event, the event read again sends the
  email again: a second receipt, a second refund notice.

Kafka deletes whole log segments, never single records: a record outlives the topic's
retention.ms by up to one segment (segment.ms, the broker's log.roll.hours, 7 days by
default; kafka-topics.yaml does not shorten it). A week of margin on top covers clock
skew, a prune and a replay racing, and an operator who raises retention.ms first and
the setting second.
"""

SEGMENT_ROLL_DAYS = 7
MARGIN_DAYS = 7


def minimum_kept_days(kafka_retention_days: int) -> int:
    """The shortest retention of a dedupe record safe for this topic retention."""
    return kafka_retention_days + SEGMENT_ROLL_DAYS + MARGIN_DAYS


def _check_window(
    setting: str, days: int, kafka_setting: str, kafka_days: int, consequence: str
) -> None:
    needed = minimum_kept_days(kafka_days)
    if days < needed:
        raise ValueError(
            f"{setting}={days} is shorter than the {needed} days a message can still be "
            f"redelivered ({kafka_setting}={kafka_days} + {SEGMENT_ROLL_DAYS} days of log "
            f"segment + {MARGIN_DAYS} days of margin): {consequence}"
        )


def check_command_id_window(command_id_days: int, kafka_command_retention_days: int) -> None:
    """Raise ValueError (a settings error at start) when ids would be pruned too early."""
    _check_window(
        "COMMAND_ID_RETENTION_DAYS", command_id_days,
        "KAFKA_COMMAND_RETENTION_DAYS", kafka_command_retention_days,
        "a pruned id would let a redelivered command apply a second time",
    )


def check_notification_window(notification_days: int, kafka_event_retention_days: int) -> None:
    """Raise ValueError (a settings error at start) when email claims would go too early."""
    _check_window(
        "NOTIFICATION_RETENTION_DAYS", notification_days,
        "KAFKA_EVENT_RETENTION_DAYS", kafka_event_retention_days,
        "a pruned claim would let a redelivered event send its email a second time",
    )
