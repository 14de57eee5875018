"""Repairs the read models from the write model."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from allocation.service_layer.unit_of_work import AbstractUnitOfWork


@dataclass(frozen=True)
class RebuildReport:
    added: int
    removed: int
    corrected: int
    unchanged: int

    def __str__(self) -> str:
        return (
            f"added {self.added}, removed {self.removed}, corrected {self.corrected},"
            f" unchanged {self.unchanged}"
        )


@dataclass(frozen=True)
class ViewsReport:
    allocations: RebuildReport  # allocations_view: one row per allocated order line
    availability: RebuildReport  # availability_view: one row per SKU


def rebuild_views(uow: AbstractUnitOfWork) -> ViewsReport:
    """Makes both read models equal what the write model holds, in one transaction."""
    with uow:
        # Availability first: reading it share-locks the products, so no change
        # lands between reading the write model and reading the views.
        wanted_availability = {a.sku: a for a in uow.products.availabilities()}
        availability = _reconcile(
            uow.availability_view.all(),
            wanted_availability,
            put=lambda _sku, row: uow.availability_view.put(row),
            remove=uow.availability_view.remove,
        )
        allocations = _reconcile(
            {(o, s): b for o, s, b in uow.allocations_view.all_rows()},
            {(o, s): b for o, s, b in uow.products.allocation_rows()},
            put=lambda key, batchref: uow.allocations_view.add(*key, batchref),
            remove=lambda key: uow.allocations_view.remove(*key),
        )
        uow.commit()
    return ViewsReport(allocations, availability)


Key = TypeVar("Key", bound=Hashable)
Row = TypeVar("Row")


def _reconcile(
    actual: Mapping[Key, Row],
    wanted: Mapping[Key, Row],
    put: Callable[[Key, Row], None],
    remove: Callable[[Key], None],
) -> RebuildReport:
    """Writes what differs from ``wanted`` and removes what it lacks."""
    for key in actual.keys() - wanted.keys():
        remove(key)
    added = corrected = 0
    for key, row in wanted.items():
        if key not in actual:
            added += 1
        elif actual[key] != row:
            corrected += 1
        else:
            continue
        put(key, row)
    unchanged = len(wanted) - added - corrected
    return RebuildReport(added, len(actual.keys() - wanted.keys()), corrected, unchanged)
