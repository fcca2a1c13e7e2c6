"""Wire conventions shared by every contract: camelCase JSON, snake_case Python, and
numbers and booleans that are JSON numbers and booleans."""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticKnownError
from pydantic_core.core_schema import ErrorType


def _exactly(kind: type, error: ErrorType) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if type(value) is not kind:  # a bool is an int subclass; "5" and 5.0 equal 5
            raise PydanticKnownError(error)
        return value

    return check


# Every int and bool field of a wire model (and the schema version) is checked by these.
# Lax pydantic takes "5", true and 5.0 for the integer 5 (and "false" or 0 for False) on
# HTTP and on Kafka alike: a contract that says integer must not move credits for a string.
#
# - A before-validator, not `Strict()`: Litestar validates a request body with
#   `model_validate(body, strict=False)`, and a call's strict=False switches `Strict()`
#   off. A type check cannot be switched off by the caller.
# - Per field, not a strict model config: that would also refuse the JSON strings that
#   carry UUIDs and datetimes when Litestar validates a decoded dict (Python mode).
# - Last in the `Annotated`, after any constraint: `Annotated[int, Field(ge=0), EXACTLY_INT]`.
#   A constraint after it still holds, but pydantic checks it in Python and the JSON
#   Schema (OpenAPI, AsyncAPI) shows a raw `ge` instead of `minimum`.
#
# tests/test_strict_numbers.py walks every field of every wire model to keep all this so.
EXACTLY_INT = BeforeValidator(_exactly(int, "int_type"))
EXACTLY_BOOL = BeforeValidator(_exactly(bool, "bool_type"))
StrictInt = Annotated[int, EXACTLY_INT]
StrictBool = Annotated[bool, EXACTLY_BOOL]
SchemaVersion = Annotated[Literal[1], EXACTLY_INT]  # pydantic's Literal[1] takes true and 1.0


_CONTROL = {*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F}


def _no_control_characters(value: str) -> str:
    """Free text (a reason, a reference) is shown in the console, written to logs and
    CSVs and stored in Postgres, which cannot hold a NUL: control characters other than
    tab and line breaks are refused instead of failing later or reaching a terminal."""
    if any(ord(character) in _CONTROL for character in value):
        raise ValueError("control characters are not allowed")
    return value


# Every free-text field of a wire model: `Annotated[str, Field(...), PLAIN_TEXT]`.
PLAIN_TEXT = AfterValidator(_no_control_characters)


class WireModel(BaseModel):
    """Base of all wire models.

    JSON keys are camelCase (as in the seed's transaction record) on HTTP and Kafka
    alike; Python code reads snake_case attributes. Unknown keys are refused so a
    typo in a command is an error, not a silently ignored field. Ints and bools are
    exactly ints and bools (see above).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
    )


def examples(*bodies: dict[str, Any]) -> ConfigDict:
    """`model_config` of a wire model with example bodies (JSON, camelCase) for the
    OpenAPI document: generated clients and Swagger show them. A test validates each
    against its model, so an example cannot drift from the contract."""
    return ConfigDict(json_schema_extra={"examples": list(bodies)})
