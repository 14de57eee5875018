"""Available-to-promise: what a SKU can give now, and when it could give N units."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Slot:
    """One batch's free units: in the warehouse (no ETA) or arriving on its ETA."""

    eta: date | None
    available: int


@dataclass(frozen=True)
class Promise:
    can_allocate: bool
    eta: date | None  # None with can_allocate: from the warehouse, now


@dataclass(frozen=True)
class Availability:
    """A SKU's stock as the shop sees it. ``slots`` are its batches in the order an
    allocation chooses them (warehouse first, then earliest ETA)."""

    sku: str
    version: int
    slots: tuple[Slot, ...]
    backordered: int
    held: int = 0  # units in active holds: not available, and not in the slots

    @property
    def available(self) -> int:
        return sum(slot.available for slot in self.slots)

    @property
    def in_stock(self) -> int:
        return sum(slot.available for slot in self.slots if slot.eta is None)

    @property
    def incoming(self) -> list[tuple[date, int]]:
        """Free units arriving, summed per date, earliest first, dates with none left out."""
        per_date: dict[date, int] = defaultdict(int)
        for slot in self.slots:
            if slot.eta is not None:
                per_date[slot.eta] += slot.available
        return [(eta, qty) for eta, qty in sorted(per_date.items()) if qty > 0]

    def promise(self, qty: int) -> Promise:
        """What allocating ``qty`` units now would do: the first batch, in the order of
        choice, that can take the whole line (a line is never split)."""
        slot = next((s for s in self.slots if s.available >= qty), None)
        return Promise(False, None) if slot is None else Promise(True, slot.eta)
