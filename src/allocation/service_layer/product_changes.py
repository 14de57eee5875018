"""What changed in a product since a repository read it: the rows a write must touch.

A repository loads a stated part of a product (see AbstractRepository); it
keeps a ProductAsRead of what it loaded, and at commit compares the product
with it. Only what was loaded can have changed, so only that is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from allocation.domain import model
from allocation.domain.holds import Hold


@dataclass(frozen=True)
class BatchAsRead:
    purchased: int
    allocated: int
    held: int
    lines: frozenset[model.OrderLine] | None  # None: this load did not read its lines

    def quantities_differ(self, batch: model.Batch) -> bool:
        now = (batch.purchased_quantity, batch.allocated_quantity, batch.held_quantity)
        return (self.purchased, self.allocated, self.held) != now


WaitingAsRead = tuple[str, str, int, datetime]
"""(orderid, sku, qty, since) of a backorder"""


def _waiting(product: model.Product) -> frozenset[WaitingAsRead]:
    return frozenset((b.orderid, b.sku, b.qty, b.since) for b in product.backorders)


HoldAsRead = tuple[str, str, datetime, str | None]
"""(status, batchref, expires_at, orderid) of a hold: what a change of it may touch"""


def _hold(hold: Hold) -> HoldAsRead:
    return (hold.status, hold.batchref, hold.expires_at, hold.orderid)


@dataclass(frozen=True)
class ProductAsRead:
    version: int
    batches: dict[str, BatchAsRead]
    waiting: frozenset[WaitingAsRead]  # the backorders the load read
    holds: dict[str, HoldAsRead]  # the holds the load read, by holdid

    @classmethod
    def of(cls, product: model.Product, with_lines: bool) -> ProductAsRead:
        return cls(
            product.version_number,
            {
                batch.reference: BatchAsRead(
                    batch.purchased_quantity,
                    batch.allocated_quantity,
                    batch.held_quantity,
                    batch.allocations if with_lines else None,
                )
                for batch in product.batches
            },
            _waiting(product),
            {hold.holdid: _hold(hold) for hold in product.holds},
        )


@dataclass(frozen=True)
class ProductChanges:
    """A product's changes, in the order a write applies them."""

    product: model.Product
    read_version: int | None  # None: the product is new
    new_batches: list[model.Batch] = field(default_factory=list)
    changed_batches: list[model.Batch] = field(default_factory=list)
    removed_lines: list[model.OrderLine] = field(default_factory=list)
    added_lines: list[tuple[str, model.OrderLine]] = field(default_factory=list)  # (batchref, line)
    removed_waiting: list[WaitingAsRead] = field(default_factory=list)
    added_waiting: list[WaitingAsRead] = field(default_factory=list)
    new_holds: list[Hold] = field(default_factory=list)
    changed_holds: list[Hold] = field(default_factory=list)

    @property
    def is_new(self) -> bool:
        return self.read_version is None

    @property
    def rows_changed(self) -> bool:
        return bool(
            self.is_new
            or self.new_batches
            or self.changed_batches
            or self.removed_lines
            or self.added_lines
            or self.removed_waiting
            or self.added_waiting
            or self.new_holds
            or self.changed_holds
            or self.product.version_number != self.read_version
        )


def changes_since(product: model.Product, as_read: ProductAsRead | None) -> ProductChanges:
    """The product's changes since it was read; everything, for a product never stored."""
    changes = ProductChanges(product, None if as_read is None else as_read.version)
    read_batches = {} if as_read is None else as_read.batches
    read_waiting = frozenset() if as_read is None else as_read.waiting
    waiting = _waiting(product)
    changes.removed_waiting.extend(sorted(read_waiting - waiting))
    changes.added_waiting.extend(sorted(waiting - read_waiting))
    _hold_changes(product, {} if as_read is None else as_read.holds, changes)
    for batch in product.batches:
        read = read_batches.get(batch.reference)
        if read is None:
            changes.new_batches.append(batch)
            read = BatchAsRead(batch.purchased_quantity, batch.allocated_quantity, 0, frozenset())
        elif read.quantities_differ(batch):
            changes.changed_batches.append(batch)
        if read.lines is not None:
            lines = batch.allocations
            changes.removed_lines.extend(read.lines - lines)
            changes.added_lines.extend((batch.reference, line) for line in lines - read.lines)
    return changes


def _hold_changes(
    product: model.Product, read: dict[str, HoldAsRead], changes: ProductChanges
) -> None:
    for hold in product.holds:
        if hold.holdid not in read:
            changes.new_holds.append(hold)
        elif read[hold.holdid] != _hold(hold):
            changes.changed_holds.append(hold)
