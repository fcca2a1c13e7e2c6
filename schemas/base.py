"""Wire conventions shared by every contract: camelCase JSON, snake_case Python."""

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """Base of all wire models.

    JSON keys are camelCase (as in the seed's transaction record) on HTTP and Kafka
    alike; Python code reads snake_case attributes. Unknown keys are refused so a
    typo in a command is an error, not a silently ignored field.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )
