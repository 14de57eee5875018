"""What the HTTP API accepts: request bodies, path ids and query parameters."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError

from allocation.domain import commands
from allocation.entrypoints.validation import (
    MAX_NAME_LENGTH,
    NO_CONTROLS,
    InvalidInput,
    Name,
    PositiveQuantity,
    Strict,
    describe,
)

# An id in a URL path. The server cannot tell `%2F` from `/`, and a path's trailing
# `/` is dropped (api.app), so such an id cannot end with `/`; a SKU that shares
# its path with an order id (DELETE /allocations/<orderid>/<sku>) holds none.
PathName = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=rf"^[^{NO_CONTROLS}]*[^{NO_CONTROLS}/]$",
    ),
]
SegmentName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH, pattern=rf"^[^{NO_CONTROLS}/]+$"),
]


class AddBatchRequest(Strict):
    ref: Name
    sku: Name
    qty: PositiveQuantity
    eta: date | None = None

    def to_command(self) -> commands.CreateBatch:
        return commands.CreateBatch(ref=self.ref, sku=self.sku, qty=self.qty, eta=self.eta)


class AllocateRequest(Strict):
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


# How long a hold lasts unless extended: a day at most, a quarter of an hour by default.
MAX_HOLD_SECONDS = 86_400
HoldSeconds = Annotated[int, Field(ge=1, le=MAX_HOLD_SECONDS)]


class PlaceHoldRequest(Strict):
    holdid: SegmentName = Field(
        description="The client's id for the hold (a retried request is recognised by it)."
    )
    sku: Name
    qty: PositiveQuantity
    ttl_seconds: HoldSeconds = Field(900, description="How long the units are held.")

    def to_command(self) -> commands.PlaceHold:
        return commands.PlaceHold(self.holdid, self.sku, self.qty, self.ttl_seconds)


class ExtendHoldRequest(Strict):
    ttl_seconds: HoldSeconds = Field(description="The hold now expires this long from now.")


class ConfirmHoldRequest(Strict):
    orderid: Name = Field(description="The order the held units become a line of.")


_name = TypeAdapter(Name)
path_id = TypeAdapter(PathName)
segment = TypeAdapter(SegmentName)


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


def parse_count(raw: str | None, field: str, default: int, low: int, high: int) -> int:
    """A whole number given as text (a query parameter), from ``low`` to ``high``;
    ``default`` when not given."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"{field}: give a whole number from {low} to {high}")
    return int(raw)


def parse_skus(raw: list[str]) -> list[str]:
    """The SKUs of a query (``?sku=A&sku=B``): 1 to MAX_SKUS of them, each a valid name."""
    if not 1 <= len(raw) <= MAX_SKUS:
        raise InvalidInput(f"sku: give between 1 and {MAX_SKUS} (got {len(raw)})")
    return [parse_name(sku, "sku", _name) for sku in raw]
