"""Events: facts about what happened, named in the past tense."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from allocation.domain.holds import HoldEndReason


class Event:
    """Base class: an event has any number of handlers; one failing does not stop the rest."""

    # Fields left out of the event's dict while they are None; every other is always there.
    sent_only_when_set: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        # Every field is a plain value: a shallow copy (dataclasses.asdict deep-copies
        # each value, a sixth of what writing a message cost).
        return {
            name: value
            for name, value in vars(self).items()
            if value is not None or name not in self.sent_only_when_set
        }


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


@dataclass(frozen=True)
class HoldPlaced(Event):
    """Units of a batch were set aside for a checkout until ``expires_at``."""

    holdid: str
    sku: str
    qty: int
    batchref: str
    expires_at: datetime


@dataclass(frozen=True)
class HoldEnded(Event):
    """A hold's units no longer count as held: released, expired, confirmed as order
    ``orderid``'s line, or given up because its batch shrank."""

    sent_only_when_set = frozenset({"orderid"})  # only a confirmed hold names its order

    holdid: str
    sku: str
    qty: int
    reason: HoldEndReason
    orderid: str | None = None
