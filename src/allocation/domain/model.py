"""The Product aggregate and what it is made of: batches of stock, order lines, backorders."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from allocation.domain import events
from allocation.domain.availability import Availability, Slot
from allocation.domain.exceptions import DuplicateBatch, LineConflict, UnknownBatch, UnknownLine

# The place of a line whose acceptance time is unknown: first in the queue.
_LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(unsafe_hash=True)
class OrderLine:
    """A value object: one SKU and quantity of one customer order.

    Equal by value and never changed after creation; not ``frozen=True`` only
    because the classical mapper must attach its state to each instance.
    ``accepted_at`` (when the service first took the line) is no part of its
    value: it is the line's place in the queue should it ever have to wait.
    """

    orderid: str
    sku: str
    qty: int
    accepted_at: datetime | None = field(default=None, compare=False, hash=False)


class Backorder:
    """An order line waiting for stock. The SKU's queue is served oldest first."""

    def __init__(self, orderid: str, sku: str, qty: int, since: datetime) -> None:
        self.orderid = orderid
        self.sku = sku
        self.qty = qty
        self.since = since

    def __repr__(self) -> str:
        return f"<Backorder {self.orderid} {self.sku} x{self.qty} since {self.since}>"

    @classmethod
    def of(cls, line: OrderLine) -> Backorder:
        """The line waiting, in the place its acceptance time gives it."""
        return cls(line.orderid, line.sku, line.qty, line.accepted_at or _LONG_AGO)

    @property
    def line(self) -> OrderLine:
        return OrderLine(self.orderid, self.sku, self.qty, self.since)

    def place(self) -> tuple[datetime, str]:
        """Where it stands in the queue: by the time it was accepted, then the order id."""
        since = self.since if self.since.tzinfo else self.since.replace(tzinfo=UTC)
        return (since, self.orderid)


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

    def deallocate(self, line: OrderLine) -> None:
        self._allocations.remove(line)
        self._allocated_quantity -= line.qty

    def line_for_order(self, orderid: str) -> OrderLine | None:
        return next((line for line in self._allocations if line.orderid == orderid), None)

    def deallocate_one(self) -> OrderLine:
        """Gives up one line; the choice is deterministic so reallocation is predictable."""
        line = max(self._allocations, key=lambda candidate: candidate.orderid)
        self.deallocate(line)
        return line

    def change_purchased_quantity(self, qty: int) -> None:
        self._purchased_quantity = qty


@dataclass(frozen=True)
class Allocation:
    """What became of a line the shop asked to allocate."""

    batchref: str | None  # None: not allocated (backordered, or refused)
    backordered: bool = False


@dataclass(frozen=True)
class Release:
    """A line cancelled: the batch it held stock in, or None if it was waiting."""

    line: OrderLine
    batchref: str | None


class Product:
    """The aggregate: the only way to change the batches and backorders of one SKU.

    Every change increments ``version_number``; persistence uses it to refuse a
    change that was based on a version another transaction has already replaced.
    A repository may load only some order lines and backorders (it says which);
    ``backordered_quantity`` counts every waiting unit, loaded or not.
    """

    def __init__(
        self,
        sku: str,
        batches: list[Batch] | None = None,
        version_number: int = 0,
        backorders: list[Backorder] | None = None,
    ) -> None:
        self.sku = sku
        self.batches = batches or []
        self.version_number = version_number
        self.backorders = backorders or []
        self.backordered_quantity = sum(b.qty for b in self.backorders)
        self.events: list[events.Event] = []

    def __repr__(self) -> str:
        return f"<Product {self.sku} v{self.version_number}>"

    @property
    def available_quantity(self) -> int:
        return sum(batch.available_quantity for batch in self.batches)

    def availability(self) -> Availability:
        """What could be promised now: each batch's free units, in the order of choice."""
        slots = tuple(Slot(b.eta, b.available_quantity) for b in sorted(self.batches))
        return Availability(self.sku, self.version_number, slots, self.backordered_quantity)

    def batch(self, ref: str) -> Batch | None:
        return next((b for b in self.batches if b.reference == ref), None)

    def add_batch(self, batch: Batch) -> None:
        """A new batch; the waiting lines it can take are allocated at once.

        No waiting line fits a batch already there (every change that frees stock
        serves the queue), so only the new batch takes lines: the other batches'
        lines need not be loaded."""
        if self.batch(batch.reference) is not None:
            raise DuplicateBatch(batch.reference)
        with self._change():
            self.batches.append(batch)
            self._fill_backorders()

    def allocate(self, line: OrderLine, backorder: bool = False) -> Allocation:
        """Allocates the line to the best batch; with ``backorder``, a line no batch can
        take waits in the SKU's queue instead of being refused.

        Of the lines already allocated or waiting, only this order's are looked at,
        so a repository may load just those. Asking again for a line that is already
        allocated (or waiting) answers what it has and changes nothing; the same
        order and SKU with another quantity is a LineConflict.
        """
        held = self._holding(line)
        if held is not None:
            return held
        batch = self._best_batch(line)
        if batch is None and not backorder:  # refused: nothing changes, no new version
            self.events.append(events.OutOfStock(line.sku))
            return Allocation(None)
        with self._change():
            if batch is not None:
                self._put(line, batch)
                return Allocation(batch.reference)
            self.events.append(events.OutOfStock(line.sku))
            self._wait(Backorder.of(line))
            return Allocation(None, backordered=True)

    def change_batch_quantity(self, ref: str, qty: int) -> None:
        """Sets a batch's purchased quantity. Lines that no longer fit leave it and
        join the queue at the place they first had; the queue is then served, so they
        move to other batches with room, or wait. All in this one change: no line is
        left behind by a crash between the steps."""
        batch = self.batch(ref)
        if batch is None:
            raise UnknownBatch(ref)
        with self._change():
            batch.change_purchased_quantity(qty)
            displaced = []
            while batch.available_quantity < 0:
                line = batch.deallocate_one()
                self.events.append(events.Deallocated(line.orderid, line.sku, line.qty, ref))
                displaced.append(line)
            for line in displaced:
                self._wait(Backorder.of(line), announce=False)
            self._fill_backorders()
            for line in displaced:
                if self._backorder_of(line.orderid) is not None:
                    self.events.append(events.OutOfStock(line.sku))
                    self.events.append(events.Backordered(line.orderid, line.sku, line.qty))

    def cancel(self, orderid: str) -> Release:
        """Releases the order's line, allocated or waiting; freed stock goes to the queue.
        Only that order's line need be loaded, and the queue."""
        with self._change():
            release = self._release(orderid)
            if release.batchref is not None:
                self._fill_backorders()
            return release

    def _release(self, orderid: str) -> Release:
        allocated = self._allocated_line(orderid)
        if allocated is not None:
            batch, line = allocated
            batch.deallocate(line)
            ref = batch.reference
            cancelled = events.Deallocated(line.orderid, line.sku, line.qty, ref, "cancelled")
            self.events.append(cancelled)
            return Release(line, ref)
        waiting = self._backorder_of(orderid)
        if waiting is None:
            raise UnknownLine(orderid, self.sku)
        self._unwait(waiting)
        self.events.append(events.BackorderCancelled(waiting.orderid, self.sku, waiting.qty))
        return Release(waiting.line, None)

    def _holding(self, line: OrderLine) -> Allocation | None:
        allocated = self._allocated_line(line.orderid)
        if allocated is not None:
            batch, held = allocated
            if held != line:
                raise LineConflict(line.orderid, line.sku, held.qty)
            return Allocation(batch.reference)
        waiting = self._backorder_of(line.orderid)
        if waiting is None:
            return None
        if waiting.line != line:
            raise LineConflict(line.orderid, line.sku, waiting.qty)
        return Allocation(None, backordered=True)

    def _allocated_line(self, orderid: str) -> tuple[Batch, OrderLine] | None:
        """The order's allocated line and its batch, if it has one."""
        for batch in self.batches:
            line = batch.line_for_order(orderid)
            if line is not None:
                return batch, line
        return None

    def _best_batch(self, line: OrderLine) -> Batch | None:
        return next((b for b in sorted(self.batches) if b.can_allocate(line)), None)

    def _put(self, line: OrderLine, batch: Batch) -> None:
        batch.allocate(line)
        self.events.append(events.Allocated(line.orderid, line.sku, line.qty, batch.reference))

    def _backorder_of(self, orderid: str) -> Backorder | None:
        return next((b for b in self.backorders if b.orderid == orderid), None)

    def _wait(self, backorder: Backorder, announce: bool = True) -> None:
        self.backorders.append(backorder)
        self.backordered_quantity += backorder.qty
        if announce:
            self.events.append(events.Backordered(backorder.orderid, self.sku, backorder.qty))

    def _unwait(self, backorder: Backorder) -> None:
        self.backorders.remove(backorder)
        self.backordered_quantity -= backorder.qty

    def _fill_backorders(self) -> None:
        """Serves the queue oldest first; a line no batch can take keeps its place."""
        for waiting in sorted(self.backorders, key=Backorder.place):
            line = waiting.line
            batch = self._best_batch(line)
            if batch is not None:
                self._unwait(waiting)
                self._put(line, batch)

    @contextmanager
    def _change(self) -> Iterator[None]:
        """One change: the version moves once, and a sell-out or a return to stock is
        announced once, from the stock before and after."""
        before = self.available_quantity
        yield
        self.version_number += 1
        after = self.available_quantity
        if before > 0 and after == 0:
            self.events.append(events.SoldOut(self.sku))
        elif before == 0 and after > 0:
            self.events.append(events.BackInStock(self.sku, after))
