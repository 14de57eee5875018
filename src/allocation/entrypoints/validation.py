"""The rules every edge applies to what it is given: names, quantities, strict models,
and one message that names every problem."""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

MAX_NAME_LENGTH = 255
MAX_QUANTITY = 1_000_000_000

NO_CONTROLS = r"\x00-\x1f\x7f"
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH, pattern=rf"^[^{NO_CONTROLS}]+$"),
]
PositiveQuantity = Annotated[int, Field(gt=0, le=MAX_QUANTITY)]
Quantity = Annotated[int, Field(ge=0, le=MAX_QUANTITY)]


class InvalidInput(ValueError):
    """The input was not what the contract asks for; the message says what is wrong."""


class Strict(BaseModel):
    # Strict: "5" is not a quantity and 5.0 is not an integer. Unknown keys are
    # ignored so that clients may send more than we read.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


Model = TypeVar("Model", bound=BaseModel)


def parse(schema: type[Model], raw: bytes | str) -> Model:
    """Parses JSON into the schema, or raises InvalidInput naming every problem."""
    try:
        return schema.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidInput(describe(error)) from None


def describe(error: ValidationError, field: str = "") -> str:
    problems = []
    for detail in error.errors(include_url=False):
        where = ".".join(str(part) for part in detail["loc"]) or field
        message = detail["msg"]
        if detail["type"] == "string_pattern_mismatch":
            message = _pattern_problem(str(detail["input"]))
        if detail["type"] == "json_invalid":
            where, message = (
                "",
                f"Body is not valid JSON ({message.removeprefix('Invalid JSON: ')})",
            )
        if detail["type"] == "model_type":
            message = "Body should be a JSON object"
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def _pattern_problem(given: str) -> str:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in given):
        return "String should not contain control characters"
    return "String should not contain `/` here"
