"""The Product aggregate and what it is made of: batches of stock, order lines, backorders,
holds, and the movements its changes record."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from allocation.domain import events
from allocation.domain.availability import Availability, Slot
from allocation.domain.exceptions import (
    DuplicateBatch,
    HoldConflict,
    LineConflict,
    UnknownBatch,
    UnknownHold,
    UnknownLine,
)
from allocation.domain.holds import Hold, HoldEndReason
from allocation.domain.movements import Movement, MovementKind

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
        # Units its active holds set aside (the holds themselves need not be loaded).
        self._held_quantity = 0

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
    def held_quantity(self) -> int:
        return self._held_quantity

    @property
    def available_quantity(self) -> int:
        return self._purchased_quantity - self._allocated_quantity - self._held_quantity

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

    def hold(self, qty: int) -> None:
        self._held_quantity += qty

    def unhold(self, qty: int) -> None:
        self._held_quantity -= qty


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
    """The aggregate: the only way to change the batches, backorders and holds of one SKU.

    Every change increments ``version_number``; persistence uses it to refuse a
    change that was based on a version another transaction has already replaced.
    A repository may load only some order lines, backorders and holds (it says
    which); ``backordered_quantity`` counts every waiting unit, loaded or not, and
    each batch its held units. Every change of the available stock is recorded in
    ``movements`` (numbered on from ``movement_seq``), written with the change.
    """

    def __init__(
        self,
        sku: str,
        batches: list[Batch] | None = None,
        version_number: int = 0,
        backorders: list[Backorder] | None = None,
        holds: list[Hold] | None = None,
        movement_seq: int = 0,
    ) -> None:
        self.sku = sku
        self.batches = batches or []
        self.version_number = version_number
        self.backorders = backorders or []
        self.backordered_quantity = sum(b.qty for b in self.backorders)
        self.holds = holds or []
        self.movement_seq = movement_seq  # the number of the SKU's last movement
        self.events: list[events.Event] = []
        self.movements: list[Movement] = []  # recorded since the product was loaded

    def __repr__(self) -> str:
        return f"<Product {self.sku} v{self.version_number}>"

    @property
    def available_quantity(self) -> int:
        return sum(batch.available_quantity for batch in self.batches)

    def availability(self) -> Availability:
        """What could be promised now: each batch's free units, in the order of choice."""
        slots = tuple(Slot(b.eta, b.available_quantity) for b in sorted(self.batches))
        held = sum(b.held_quantity for b in self.batches)
        return Availability(self.sku, self.version_number, slots, self.backordered_quantity, held)

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
            self._moved("batch_added", batch.purchased_quantity, batch.reference, "new_batch")
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
        batch = self._best_batch(line.qty)
        if batch is None and not backorder:  # refused: nothing changes, no new version
            self.events.append(events.OutOfStock(line.sku))
            return Allocation(None)
        with self._change():
            if batch is not None:
                self._put(line, batch, "allocated")
                return Allocation(batch.reference)
            self.events.append(events.OutOfStock(line.sku))
            self._wait(Backorder.of(line))
            return Allocation(None, backordered=True)

    def change_batch_quantity(self, ref: str, qty: int) -> None:
        """Sets a batch's purchased quantity. When it no longer covers its lines and
        holds, holds give way first (each moves whole to another batch, or ends), then
        lines, which join the queue at the place they first had; the queue is then
        served, so they move to other batches with room, or wait. All in this one
        change: no line is left behind by a crash between the steps."""
        batch = self.batch(ref)
        if batch is None:
            raise UnknownBatch(ref)
        with self._change():
            difference = qty - batch.purchased_quantity
            batch.change_purchased_quantity(qty)
            if difference:
                self._moved("batch_changed", difference, ref, "quantity_changed")
            self._make_holds_give_way(batch)
            displaced = []
            while batch.available_quantity < 0:
                line = batch.deallocate_one()
                self.events.append(events.Deallocated(line.orderid, line.sku, line.qty, ref))
                self._moved("deallocated", line.qty, ref, "batch_reduced", orderid=line.orderid)
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

    # -- holds ----------------------------------------------------------------------------

    def place_hold(self, holdid: str, qty: int, expires_at: datetime, now: datetime) -> Hold | None:
        """Sets ``qty`` units aside in the batch an allocation would choose; None (and
        OutOfStock) when no batch can take them whole: a hold never waits.

        The load need hold only this hold, if it exists: placing it again with the
        same quantity while it is active answers it unchanged (its expiry is not
        moved); another quantity, or a hold that has ended, is a HoldConflict."""
        known = self._hold(holdid)
        if known is not None:
            if known.qty == qty and known.is_active(now):
                return known
            if known.qty != qty:
                raise HoldConflict(holdid, f"was placed for {known.qty} of sku {self.sku}")
            raise HoldConflict(holdid, f"has ended ({known.state(now)})")
        batch = self._best_batch(qty)
        if batch is None:
            self.events.append(events.OutOfStock(self.sku))
            return None
        with self._change():
            hold = Hold(holdid, self.sku, qty, batch.reference, expires_at, placed_at=now)
            batch.hold(qty)
            self.holds.append(hold)
            self.events.append(
                events.HoldPlaced(holdid, self.sku, qty, batch.reference, expires_at)
            )
            self._moved("hold_placed", -qty, batch.reference, "placed", holdid=holdid)
        return hold

    def extend_hold(self, holdid: str, expires_at: datetime, now: datetime) -> Hold:
        """Moves an active hold's expiry to ``expires_at``."""
        hold = self._active_hold(holdid, now, "extended")
        with self._change():
            hold.expires_at = expires_at
        return hold

    def release_hold(self, holdid: str, now: datetime) -> Hold:
        """Gives an active hold's units back; they go to the queue. Releasing it again
        changes nothing. Only this hold and the queue need be loaded."""
        hold = self._loaded_hold(holdid)
        if hold.status == "released":
            return hold
        self._active_hold(holdid, now, "released")
        with self._change():
            self._end(hold, "released")
            self._fill_backorders()
        return hold

    def confirm_hold(self, holdid: str, orderid: str, now: datetime) -> Allocation:
        """Turns an active hold into order ``orderid``'s line, in the hold's batch.
        Confirming it again for the same order answers the same; the load need hold
        only this hold and the order's lines."""
        hold = self._loaded_hold(holdid)
        if hold.status == "confirmed" and hold.orderid == orderid:
            return Allocation(hold.batchref)
        self._active_hold(holdid, now, "confirmed")
        if self._allocated_line(orderid) is not None or self._backorder_of(orderid) is not None:
            raise HoldConflict(holdid, f"cannot be confirmed: order {orderid} has sku {self.sku}")
        batch = self.batch(hold.batchref)
        assert batch is not None, "a hold's batch is the product's"
        with self._change():
            self._end(hold, "confirmed", orderid)
            line = OrderLine(orderid, self.sku, hold.qty, accepted_at=now)
            self._put(line, batch, "hold_confirmed", holdid=holdid)
        return Allocation(batch.reference)

    def expire_holds(self, now: datetime) -> list[Hold]:
        """Ends the loaded holds whose time has run out; their units go to the queue.
        Nothing changes (no new version) when none is due."""
        due = [hold for hold in self.holds if hold.is_due(now)]
        if due:
            with self._change():
                for hold in due:
                    self._end(hold, "expired")
                self._fill_backorders()
        return due

    def _hold(self, holdid: str) -> Hold | None:
        return next((hold for hold in self.holds if hold.holdid == holdid), None)

    def _loaded_hold(self, holdid: str) -> Hold:
        hold = self._hold(holdid)
        if hold is None:
            raise UnknownHold(holdid)
        return hold

    def _active_hold(self, holdid: str, now: datetime, to_be: str) -> Hold:
        hold = self._loaded_hold(holdid)
        if not hold.is_active(now):
            raise HoldConflict(holdid, f"cannot be {to_be}: it is {hold.state(now)}")
        return hold

    def _end(self, hold: Hold, reason: HoldEndReason, orderid: str | None = None) -> None:
        batch = self.batch(hold.batchref)
        assert batch is not None, "a hold's batch is the product's"
        batch.unhold(hold.qty)
        hold.end(reason, orderid)
        self.events.append(events.HoldEnded(hold.holdid, self.sku, hold.qty, reason, orderid))
        self._moved(
            "hold_ended", hold.qty, hold.batchref, reason, orderid=orderid, holdid=hold.holdid
        )

    def _make_holds_give_way(self, batch: Batch) -> None:
        """While ``batch`` holds less than its lines and holds take, its holds leave it,
        the one placed last first: each moves whole to the best other batch with room,
        or ends. Every active hold of the SKU must be loaded."""
        on_batch = [h for h in self.holds if h.batchref == batch.reference and h.status == "active"]
        for hold in sorted(on_batch, key=lambda h: (h.placed_at, h.holdid), reverse=True):
            if batch.available_quantity >= 0:
                return
            other = next(
                (
                    b
                    for b in sorted(self.batches)
                    if b is not batch and b.available_quantity >= hold.qty
                ),
                None,
            )
            if other is None:
                self._end(hold, "batch_reduced")
                continue
            batch.unhold(hold.qty)
            other.hold(hold.qty)
            hold.batchref = other.reference

    # -- lines and the queue ---------------------------------------------------------------

    def _release(self, orderid: str) -> Release:
        allocated = self._allocated_line(orderid)
        if allocated is not None:
            batch, line = allocated
            batch.deallocate(line)
            ref = batch.reference
            cancelled = events.Deallocated(line.orderid, line.sku, line.qty, ref, "cancelled")
            self.events.append(cancelled)
            self._moved("deallocated", line.qty, ref, "cancelled", orderid=line.orderid)
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

    def _best_batch(self, qty: int) -> Batch | None:
        """The first batch in the order of choice that can take ``qty`` units whole."""
        return next((b for b in sorted(self.batches) if b.available_quantity >= qty), None)

    def _put(self, line: OrderLine, batch: Batch, reason: str, holdid: str | None = None) -> None:
        batch.allocate(line)
        self.events.append(events.Allocated(line.orderid, line.sku, line.qty, batch.reference))
        self._moved(
            "allocated", -line.qty, batch.reference, reason, orderid=line.orderid, holdid=holdid
        )

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
            batch = self._best_batch(line.qty)
            if batch is not None:
                self._unwait(waiting)
                self._put(line, batch, "backorder_filled")

    def _moved(
        self, kind: MovementKind, qty: int, batchref: str, reason: str, **refs: str | None
    ) -> None:
        """Records a change of the available stock, made inside a _change(): it carries
        the version that change ends with."""
        self.movement_seq += 1
        version = self.version_number + 1
        self.movements.append(
            Movement(self.movement_seq, kind, qty, batchref, version, reason, **refs)
        )

    @contextmanager
    def _change(self) -> Iterator[None]:
        """One change (never nested): the version moves once, and a sell-out or a return
        to stock is announced once, from the stock before and after."""
        before = self.available_quantity
        yield
        self.version_number += 1
        after = self.available_quantity
        if before > 0 and after == 0:
            self.events.append(events.SoldOut(self.sku))
        elif before == 0 and after > 0:
            self.events.append(events.BackInStock(self.sku, after))
