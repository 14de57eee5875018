"""Available-to-promise: the answers computed from a product's batches."""

from __future__ import annotations

from datetime import date

import pytest

from allocation.domain.availability import Promise
from allocation.domain.model import Batch, OrderLine, Product

DEC_1 = date(2026, 12, 1)
DEC_8 = date(2026, 12, 8)


def product() -> Product:
    """5 in the warehouse, 10 arriving on Dec 1 in two batches, 4 on Dec 8, 0 free on Dec 1."""
    batches = [
        Batch("later", "LAMP", 4, eta=DEC_8),
        Batch("warehouse", "LAMP", 5),
        Batch("first-a", "LAMP", 6, eta=DEC_1),
        Batch("first-b", "LAMP", 4, eta=DEC_1),
        Batch("full", "LAMP", 2, eta=DEC_1),
    ]
    lamp = Product("LAMP", batches, version_number=7)
    lamp.batches[-1].allocate(OrderLine("o1", "LAMP", 2))
    return lamp


def test_counts_what_is_free_where_and_when() -> None:
    availability = product().availability()
    assert availability.version == 7
    assert availability.available == 19
    assert availability.in_stock == 5
    assert availability.incoming == [(DEC_1, 10), (DEC_8, 4)]


def test_dates_with_nothing_free_are_left_out() -> None:
    lamp = Product("LAMP", [Batch("full", "LAMP", 2, eta=DEC_1)])
    lamp.allocate(OrderLine("o1", "LAMP", 2))
    assert lamp.availability().incoming == []


@pytest.mark.parametrize(
    ("qty", "promise"),
    [
        (1, Promise(True, None)),  # from the warehouse, now
        (5, Promise(True, None)),
        (6, Promise(True, DEC_1)),  # the warehouse cannot take it whole
        (7, Promise(False, None)),  # 10 arrive on Dec 1, but no one batch holds 7
        (4, Promise(True, None)),
    ],
)
def test_a_promise_is_what_allocating_would_do(qty: int, promise: Promise) -> None:
    lamp = product()
    assert lamp.availability().promise(qty) == promise
    allocation = lamp.allocate(OrderLine("asker", "LAMP", qty))
    chosen = lamp.batch(allocation.batchref) if allocation.batchref else None
    assert (allocation.batchref is not None) == promise.can_allocate
    assert (None if chosen is None else chosen.eta) == promise.eta


def test_backordered_units_are_counted() -> None:
    lamp = Product("LAMP", [])
    lamp.allocate(OrderLine("o1", "LAMP", 3), backorder=True)
    lamp.allocate(OrderLine("o2", "LAMP", 4), backorder=True)
    assert lamp.availability().backordered == 7
