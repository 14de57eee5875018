from datetime import date, timedelta

import pytest

from allocation.domain import events
from allocation.domain.exceptions import DuplicateBatch, LineConflict, UnknownBatch
from allocation.domain.model import Allocation, Batch, OrderLine, Product

today = date.today()
tomorrow = today + timedelta(days=1)
later = later_date = today + timedelta(days=10)


def test_allocating_to_a_batch_reduces_the_available_quantity() -> None:
    batch = Batch("batch-001", "SMALL-TABLE", qty=20, eta=None)
    batch.allocate(OrderLine("order-ref", "SMALL-TABLE", 2))
    assert batch.available_quantity == 18
    assert batch.allocated_quantity == 2


@pytest.mark.parametrize(
    ("batch_qty", "line_qty", "expected"),
    [(20, 2, True), (2, 20, False), (2, 2, True)],
)
def test_can_allocate_only_up_to_the_available_quantity(
    batch_qty: int, line_qty: int, expected: bool
) -> None:
    batch = Batch("batch-001", "ELEGANT-LAMP", batch_qty)
    assert batch.can_allocate(OrderLine("order-123", "ELEGANT-LAMP", line_qty)) is expected


def test_cannot_allocate_if_skus_do_not_match() -> None:
    batch = Batch("batch-001", "UNCOMFORTABLE-CHAIR", 100)
    assert batch.can_allocate(OrderLine("order-123", "EXPENSIVE-TOASTER", 10)) is False


def test_allocating_the_same_line_twice_to_a_batch_counts_it_once() -> None:
    batch = Batch("batch-001", "ANGULAR-DESK", 20)
    line = OrderLine("order-123", "ANGULAR-DESK", 2)
    batch.allocate(line)
    batch.allocate(line)
    assert batch.available_quantity == 18


def test_batches_sort_warehouse_stock_first_then_by_eta() -> None:
    shipment_later = Batch("later", "SKU", 1, later)
    warehouse = Batch("in-stock", "SKU", 1, None)
    shipment_soon = Batch("soon", "SKU", 1, tomorrow)
    assert sorted([shipment_later, warehouse, shipment_soon]) == [
        warehouse,
        shipment_soon,
        shipment_later,
    ]


def test_product_prefers_warehouse_batches_to_shipments() -> None:
    in_stock = Batch("in-stock-batch", "RETRO-CLOCK", 100, eta=None)
    shipment = Batch("shipment-batch", "RETRO-CLOCK", 100, eta=tomorrow)
    product = Product("RETRO-CLOCK", [shipment, in_stock])

    allocation = product.allocate(OrderLine("oref", "RETRO-CLOCK", 10))

    assert allocation == Allocation("in-stock-batch")
    assert in_stock.available_quantity == 90
    assert shipment.available_quantity == 100


def test_product_prefers_the_earliest_shipment() -> None:
    earliest = Batch("speedy-batch", "MINIMALIST-SPOON", 100, eta=today)
    medium = Batch("normal-batch", "MINIMALIST-SPOON", 100, eta=tomorrow)
    latest = Batch("slow-batch", "MINIMALIST-SPOON", 100, eta=later)
    product = Product("MINIMALIST-SPOON", [medium, earliest, latest])

    allocation = product.allocate(OrderLine("order1", "MINIMALIST-SPOON", 10))
    assert allocation.batchref == "speedy-batch"
    assert (earliest.available_quantity, medium.available_quantity) == (90, 100)


def test_allocation_records_an_allocated_event_and_increments_the_version() -> None:
    product = Product("LAMP", [Batch("b1", "LAMP", 10)], version_number=7)
    product.allocate(OrderLine("o1", "LAMP", 3))
    assert product.events == [events.Allocated("o1", "LAMP", 3, "b1")]
    assert product.version_number == 8


def test_out_of_stock_records_an_event_and_changes_nothing() -> None:
    batch = Batch("batch1", "SMALL-FORK", 10, eta=today)
    product = Product("SMALL-FORK", [batch], version_number=3)
    product.allocate(OrderLine("order1", "SMALL-FORK", 10))
    product.events.clear()

    assert product.allocate(OrderLine("order2", "SMALL-FORK", 1)) == Allocation(None)
    assert product.events == [events.OutOfStock("SMALL-FORK")]
    assert product.version_number == 4


def test_allocating_the_same_line_again_returns_its_batch_and_records_nothing() -> None:
    first = Batch("first", "CHAIR", 5)
    second = Batch("second", "CHAIR", 5)
    product = Product("CHAIR", [first, second])
    line = OrderLine("o1", "CHAIR", 5)
    assert product.allocate(line) == Allocation("first")
    product.events.clear()
    version = product.version_number

    assert product.allocate(line) == Allocation("first")
    assert product.events == []
    assert product.version_number == version
    assert (first.available_quantity, second.available_quantity) == (0, 5)


def test_same_order_and_sku_with_a_different_quantity_is_a_conflict() -> None:
    product = Product("CHAIR", [Batch("b", "CHAIR", 10)])
    product.allocate(OrderLine("o1", "CHAIR", 2))
    with pytest.raises(LineConflict, match="o1.*CHAIR.*qty 2"):
        product.allocate(OrderLine("o1", "CHAIR", 3))
    assert product.batches[0].available_quantity == 8


def test_adding_a_batch_increments_the_version_and_refuses_duplicates() -> None:
    product = Product("TABLE")
    product.add_batch(Batch("b1", "TABLE", 10))
    assert product.version_number == 1
    with pytest.raises(DuplicateBatch):
        product.add_batch(Batch("b1", "TABLE", 99))
    assert [b.purchased_quantity for b in product.batches] == [10]


def test_changing_quantity_deallocates_lines_until_the_batch_fits_and_they_wait() -> None:
    batch = Batch("b1", "TABLE", 20)
    product = Product("TABLE", [batch])
    for orderid in ("o1", "o2", "o3"):
        product.allocate(OrderLine(orderid, "TABLE", 6))
    product.events.clear()
    version = product.version_number

    product.change_batch_quantity("b1", 10)

    assert batch.available_quantity == 4
    assert batch.allocations == {OrderLine("o1", "TABLE", 6)}
    assert product.events == [
        events.Deallocated("o3", "TABLE", 6, "b1", "batch_reduced"),
        events.Deallocated("o2", "TABLE", 6, "b1", "batch_reduced"),
        events.OutOfStock("TABLE"),
        events.Backordered("o3", "TABLE", 6),
        events.OutOfStock("TABLE"),
        events.Backordered("o2", "TABLE", 6),
    ]
    assert [b.orderid for b in product.backorders] == ["o3", "o2"]
    assert product.backordered_quantity == 12
    assert product.version_number == version + 1


def test_deallocated_lines_move_to_the_next_best_batch_in_the_same_change() -> None:
    shrinking = Batch("shrinking", "TABLE", 20)
    later = Batch("later", "TABLE", 10, eta=later_date)
    soon = Batch("soon", "TABLE", 5, eta=tomorrow)
    product = Product("TABLE", [shrinking, later, soon])
    for orderid, qty in (("o1", 8), ("o2", 4), ("o3", 7)):
        product.allocate(OrderLine(orderid, "TABLE", qty))
    product.events.clear()

    product.change_batch_quantity("shrinking", 8)

    # Displaced lines rejoin the queue in their first places (o2 was accepted first).
    assert product.events == [
        events.Deallocated("o3", "TABLE", 7, "shrinking"),
        events.Deallocated("o2", "TABLE", 4, "shrinking"),
        events.Allocated("o2", "TABLE", 4, "soon"),
        events.Allocated("o3", "TABLE", 7, "later"),
    ]
    assert product.backorders == []
    assert [b.available_quantity for b in (shrinking, later, soon)] == [0, 3, 1]


def test_changing_quantity_of_an_unknown_batch_raises() -> None:
    with pytest.raises(UnknownBatch):
        Product("TABLE").change_batch_quantity("nope", 1)
