"""Events: facts about what happened, named in the past tense."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class Event:
    """Base class: an event has any number of handlers; one failing does not stop the rest."""

    def to_dict(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self))  # type: ignore[call-overload]


@dataclass(frozen=True)
class Allocated(Event):
    orderid: str
    sku: str
    qty: int
    batchref: str


@dataclass(frozen=True)
class Deallocated(Event):
    orderid: str
    sku: str
    qty: int
    batchref: str


@dataclass(frozen=True)
class OutOfStock(Event):
    sku: str
