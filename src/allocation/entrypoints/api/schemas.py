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


def parse_skus(raw: list[str]) -> list[str]:
    """The SKUs of a query (``?sku=A&sku=B``): 1 to MAX_SKUS of them, each a valid name."""
    if not 1 <= len(raw) <= MAX_SKUS:
        raise InvalidInput(f"sku: give between 1 and {MAX_SKUS} (got {len(raw)})")
    return [parse_name(sku, "sku", _name) for sku in raw]
