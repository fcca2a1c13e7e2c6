"""How long a command id must be remembered: longer than Kafka can redeliver its message.

The ledger worker deduplicates by command id (`processed_commands`). If the id of a
command is pruned while its message can still be read from Kafka (a consumer group
reset to the earliest offset, offsets expired after a long outage, a partition
reassigned and re-read), the message is evaluated again: a charge that was rejected
and retried by its client under a new id would now also go through, charged twice.

Kafka deletes whole log segments, never single records: a record outlives the topic's
retention.ms by up to one segment (segment.ms, the broker's log.roll.hours, 7 days by
default; kafka-topics.yaml does not shorten it). A week of margin on top covers clock
skew, a prune and a replay racing, and an operator who raises retention.ms first and
the setting second.
"""

SEGMENT_ROLL_DAYS = 7
MARGIN_DAYS = 7


def minimum_command_id_days(kafka_command_retention_days: int) -> int:
    """The shortest COMMAND_ID_RETENTION_DAYS safe for this command-topic retention."""
    return kafka_command_retention_days + SEGMENT_ROLL_DAYS + MARGIN_DAYS


def check_command_id_window(command_id_days: int, kafka_command_retention_days: int) -> None:
    """Raise ValueError (a settings error at start) when ids would be pruned too early."""
    needed = minimum_command_id_days(kafka_command_retention_days)
    if command_id_days < needed:
        raise ValueError(
            f"COMMAND_ID_RETENTION_DAYS={command_id_days} is shorter than the "
            f"{needed} days a command can still be redelivered (KAFKA_COMMAND_RETENTION_DAYS="
            f"{kafka_command_retention_days} + {SEGMENT_ROLL_DAYS} days of log segment + "
            f"{MARGIN_DAYS} days of margin): a pruned id would let a redelivered command apply "
            "a second time"
        )
