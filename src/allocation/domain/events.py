"""Events: facts about what happened, named in the past tense."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal


class Event:
    """Base class: an event has any number of handlers; one failing does not stop the rest."""

    def to_dict(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Allocated(Event):
    """An order line took stock from a batch (directly, from a backorder, or moved)."""

    orderid: str
    sku: str
    qty: int
    batchref: str


@dataclass(frozen=True)
class Deallocated(Event):
    """An order line gave its stock back: its batch shrank, or the customer cancelled."""

    orderid: str
    sku: str
    qty: int
    batchref: str
    reason: Literal["batch_reduced", "cancelled"] = "batch_reduced"


@dataclass(frozen=True)
class Backordered(Event):
    """An order line waits for stock, in its place in the SKU's queue."""

    orderid: str
    sku: str
    qty: int


@dataclass(frozen=True)
class BackorderCancelled(Event):
    """A waiting order line was cancelled before stock came."""

    orderid: str
    sku: str
    qty: int


@dataclass(frozen=True)
class OutOfStock(Event):
    """An order line found no batch with room for it."""

    sku: str


@dataclass(frozen=True)
class SoldOut(Event):
    """The SKU's last unallocated unit went: nothing is available now."""

    sku: str


@dataclass(frozen=True)
class BackInStock(Event):
    """The SKU had nothing available, and now has."""

    sku: str
    available: int
