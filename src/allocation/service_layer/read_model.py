"""Repairs the read model from the write model."""

from __future__ import annotations

from dataclasses import dataclass

from allocation.service_layer.unit_of_work import AbstractUnitOfWork


@dataclass(frozen=True)
class RebuildReport:
    added: int
    removed: int
    corrected: int
    unchanged: int


def rebuild_allocations_view(uow: AbstractUnitOfWork) -> RebuildReport:
    """Makes allocations_view equal the current allocations, in one transaction."""
    with uow:
        # The view is read first: an allocation committed in between then shows
        # up in the write model and is (re)written, never deleted by mistake.
        actual = {(o, s): b for o, s, b in uow.allocations_view.all_rows()}
        wanted = {(o, s): b for o, s, b in uow.products.allocation_rows()}
        for orderid, sku in actual.keys() - wanted.keys():
            uow.allocations_view.remove(orderid, sku)
        added = corrected = 0
        for (orderid, sku), batchref in wanted.items():
            if actual.get((orderid, sku)) == batchref:
                continue
            if (orderid, sku) in actual:
                corrected += 1
            else:
                added += 1
            uow.allocations_view.add(orderid, sku, batchref)
        uow.commit()
    unchanged = len(wanted) - added - corrected
    return RebuildReport(added, len(actual.keys() - wanted.keys()), corrected, unchanged)
