"""Turning Kafka records into commands, or into a reason to dead-letter them."""

import json

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from schemas.commands import Command, command_adapter


def parse_command(record: ConsumerRecord) -> Command | str:
    """The command in `record`, or a short human reason why it is not one."""
    value = record.value
    if not value:
        return "empty message"
    try:
        return command_adapter.validate_json(value)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)[:5]
        )
        try:
            json.loads(value)
        except ValueError:
            return "malformed JSON"
        return f"invalid command: {problems}"[:1000]
