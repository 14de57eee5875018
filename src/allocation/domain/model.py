"""The Product aggregate and what it is made of: batches of stock and order lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from allocation.domain import events
from allocation.domain.exceptions import DuplicateBatch, LineConflict, UnknownBatch


@dataclass(unsafe_hash=True)
class OrderLine:
    """A value object: one SKU and quantity of one customer order.

    Equal by value and never changed after creation; not ``frozen=True`` only
    because the classical mapper must attach its state to each instance.
    """

    orderid: str
    sku: str
    qty: int


class Batch:
    """Stock of one SKU, in the warehouse (no ETA) or on its way (with an ETA)."""

    def __init__(self, ref: str, sku: str, qty: int, eta: date | None = None) -> None:
        self.reference = ref
        self.sku = sku
        self.eta = eta
        self._purchased_quantity = qty
        # Kept beside the lines so that availability never needs them all in memory:
        # a batch with 50,000 allocated lines is as cheap to allocate from as a new one.
        self._allocated_quantity = 0
        self._allocations: set[OrderLine] = set()

    def __repr__(self) -> str:
        return f"<Batch {self.reference}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Batch) and other.reference == self.reference

    def __hash__(self) -> int:
        return hash(self.reference)

    def __gt__(self, other: Batch) -> bool:
        """Warehouse stock sorts first, then shipments by earliest ETA."""
        if self.eta is None:
            return False
        if other.eta is None:
            return True
        return self.eta > other.eta

    @property
    def purchased_quantity(self) -> int:
        return self._purchased_quantity

    @property
    def allocated_quantity(self) -> int:
        return self._allocated_quantity

    @property
    def available_quantity(self) -> int:
        return self._purchased_quantity - self.allocated_quantity

    @property
    def allocations(self) -> frozenset[OrderLine]:
        return frozenset(self._allocations)

    def can_allocate(self, line: OrderLine) -> bool:
        return self.sku == line.sku and self.available_quantity >= line.qty

    def allocate(self, line: OrderLine) -> None:
        if self.can_allocate(line) and line not in self._allocations:
            self._allocations.add(line)
            self._allocated_quantity += line.qty

    def line_for_order(self, orderid: str) -> OrderLine | None:
        return next((line for line in self._allocations if line.orderid == orderid), None)

    def deallocate_one(self) -> OrderLine:
        """Gives up one line; the choice is deterministic so reallocation is predictable."""
        line = max(self._allocations, key=lambda candidate: candidate.orderid)
        self._allocations.remove(line)
        self._allocated_quantity -= line.qty
        return line

    def change_purchased_quantity(self, qty: int) -> None:
        self._purchased_quantity = qty


class Product:
    """The aggregate: the only way to change the batches of one SKU.

    Every change increments ``version_number``; persistence uses it to refuse a
    change that was based on a version another transaction has already replaced.
    """

    def __init__(self, sku: str, batches: list[Batch] | None = None, version_number: int = 0):
        self.sku = sku
        self.batches = batches or []
        self.version_number = version_number
        self.events: list[events.Event] = []

    def __repr__(self) -> str:
        return f"<Product {self.sku} v{self.version_number}>"

    def add_batch(self, batch: Batch) -> None:
        if self.batch(batch.reference) is not None:
            raise DuplicateBatch(batch.reference)
        self.batches.append(batch)
        self.version_number += 1

    def batch(self, ref: str) -> Batch | None:
        return next((b for b in self.batches if b.reference == ref), None)

    def allocate(self, line: OrderLine) -> str | None:
        """Allocates the line to the best batch and returns its reference.

        Of the lines already allocated, only this order's are looked at, so a
        repository may load just those.

        Allocating a line that is already allocated returns the batch it has and
        changes nothing. Returns None, recording OutOfStock, when no batch can take it.
        """
        existing = self._batch_holding(line)
        if existing is not None:
            return existing.reference
        batchref = self._allocate_new(line)
        if batchref is not None:
            self.version_number += 1
        return batchref

    def _batch_holding(self, line: OrderLine) -> Batch | None:
        for batch in self.batches:
            allocated = batch.line_for_order(line.orderid)
            if allocated is None:
                continue
            if allocated != line:
                raise LineConflict(line.orderid, line.sku, allocated.qty)
            return batch
        return None

    def change_batch_quantity(self, ref: str, qty: int) -> None:
        """Sets a batch's purchased quantity; lines that no longer fit move to other batches.

        Lines are deallocated until the batch fits, then each is reallocated to the
        best other batch with room (or recorded OutOfStock), all in this one change,
        so no line is ever left behind by a crash between the two steps.
        """
        batch = self.batch(ref)
        if batch is None:
            raise UnknownBatch(ref)
        batch.change_purchased_quantity(qty)
        displaced = []
        while batch.available_quantity < 0:
            line = batch.deallocate_one()
            self.events.append(events.Deallocated(line.orderid, line.sku, line.qty, ref))
            displaced.append(line)
        self.version_number += 1
        for line in displaced:
            self._allocate_new(line)

    def _allocate_new(self, line: OrderLine) -> str | None:
        try:
            batch = next(b for b in sorted(self.batches) if b.can_allocate(line))
        except StopIteration:
            self.events.append(events.OutOfStock(line.sku))
            return None
        batch.allocate(line)
        self.events.append(events.Allocated(line.orderid, line.sku, line.qty, batch.reference))
        return batch.reference
