"""What the edges accept: request and message shapes, validated before anything runs."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from allocation.domain import commands
from allocation.service_layer.inbound import Rejected

MAX_NAME_LENGTH = 255
MAX_QUANTITY = 1_000_000_000

_NO_CONTROLS = r"\x00-\x1f\x7f"
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH, pattern=rf"^[^{_NO_CONTROLS}]+$"),
]
# An id in a URL path. The server cannot tell `%2F` from `/`, and a path's trailing
# `/` is dropped (flask_app), so such an id cannot end with `/`; a SKU that shares
# its path with an order id (DELETE /allocations/<orderid>/<sku>) holds none.
PathName = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=rf"^[^{_NO_CONTROLS}]*[^{_NO_CONTROLS}/]$",
    ),
]
SegmentName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH, pattern=rf"^[^{_NO_CONTROLS}/]+$"),
]
PositiveQuantity = Annotated[int, Field(gt=0, le=MAX_QUANTITY)]
Quantity = Annotated[int, Field(ge=0, le=MAX_QUANTITY)]


class InvalidInput(ValueError):
    """The input was not what the contract asks for; the message says what is wrong."""


class _Strict(BaseModel):
    # Strict: "5" is not a quantity and 5.0 is not an integer. Unknown keys are
    # ignored so that clients may send more than we read.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class AddBatchRequest(_Strict):
    ref: Name
    sku: Name
    qty: PositiveQuantity
    eta: date | None = None

    def to_command(self) -> commands.CreateBatch:
        return commands.CreateBatch(ref=self.ref, sku=self.sku, qty=self.qty, eta=self.eta)


class AllocateRequest(_Strict):
    orderid: Name
    sku: Name
    qty: PositiveQuantity
    backorder: bool = Field(
        False, description="When no batch can take the line: keep it waiting for stock."
    )

    def to_command(self) -> commands.Allocate:
        return commands.Allocate(self.orderid, self.sku, self.qty, self.backorder)

    @property
    def asks_about_backorders(self) -> bool:
        """The client sent ``backorder`` and so reads the answer's ``status``."""
        return "backorder" in self.model_fields_set


class ChangeBatchQuantityMessage(_Strict):
    batchref: Name
    qty: Quantity
    message_id: Name | None = None
    # The producer's own order, if it sends one: a change is applied only when it
    # comes after the last one applied to the batch.
    sequence: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    occurred_at: datetime | None = None

    def to_command(
        self, fallback_id: str | None = None, stream_entry: str | None = None
    ) -> commands.ChangeBatchQuantity:
        return commands.ChangeBatchQuantity(
            ref=self.batchref,
            qty=self.qty,
            message_id=self.message_id or fallback_id,
            position=self._position(stream_entry),
        )

    def _position(self, stream_entry: str | None) -> commands.Position | None:
        if self.sequence is not None:
            return commands.Position.of_sequence(self.sequence)
        if self.occurred_at is not None:
            return commands.Position.of_time(self.occurred_at)
        if stream_entry is not None:
            return commands.Position.of_stream_entry(stream_entry)
        return None


Model = TypeVar("Model", bound=BaseModel)

_name = TypeAdapter(Name)
path_id = TypeAdapter(PathName)
segment = TypeAdapter(SegmentName)


def parse(schema: type[Model], raw: bytes | str) -> Model:
    """Parses JSON into the schema, or raises InvalidInput naming every problem."""
    try:
        return schema.model_validate_json(raw)
    except ValidationError as error:
        raise InvalidInput(describe(error)) from None


def parse_change_batch_quantity(
    data: bytes | str, fallback_id: str | None, stream_entry: str | None
) -> commands.ChangeBatchQuantity:
    """The command a change_batch_quantity message asks for (the message's own id,
    else ``fallback_id``; its own order, else its stream entry's), or Rejected naming
    everything wrong with it."""
    try:
        message = parse(ChangeBatchQuantityMessage, data)
    except InvalidInput as error:
        raise Rejected(f"malformed: {error}") from None
    return message.to_command(fallback_id, stream_entry)


def parse_orderid(raw: str) -> str:
    return parse_name(raw, "orderid", path_id)


def parse_name(raw: str, field: str, kind: TypeAdapter[str] = path_id) -> str:
    """An id from a path (by default) or a query, or InvalidInput naming ``field``."""
    try:
        return kind.validate_python(raw)
    except ValidationError as error:
        raise InvalidInput(describe(error, field=field)) from None


_quantity = TypeAdapter(PositiveQuantity)
MAX_SKUS = 100


def parse_quantity(raw: str, field: str = "qty") -> int:
    """A quantity given as text (a query parameter): digits only, 1 to MAX_QUANTITY."""
    if not raw.isascii() or not raw.isdigit():
        raise InvalidInput(f"{field}: Input should be a whole number")
    try:
        return _quantity.validate_python(int(raw))
    except ValidationError as error:
        raise InvalidInput(describe(error, field=field)) from None


def parse_skus(raw: list[str]) -> list[str]:
    """The SKUs of a query (``?sku=A&sku=B``): 1 to MAX_SKUS of them, each a valid name."""
    if not 1 <= len(raw) <= MAX_SKUS:
        raise InvalidInput(f"sku: give between 1 and {MAX_SKUS} (got {len(raw)})")
    return [parse_name(sku, "sku", _name) for sku in raw]


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
