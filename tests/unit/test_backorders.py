"""The domain's rules for lines that wait, lines that are cancelled, and selling out."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from allocation.domain import events
from allocation.domain.exceptions import LineConflict, UnknownLine
from allocation.domain.model import Allocation, Batch, OrderLine, Product, Release

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
SOON = date(2026, 12, 1)


def line(orderid: str, qty: int, minute: int = 0, sku: str = "LAMP") -> OrderLine:
    """A line accepted ``minute`` minutes after T0: its place in the queue."""
    return OrderLine(orderid, sku, qty, accepted_at=T0 + timedelta(minutes=minute))


def waiting(product: Product) -> list[tuple[str, int]]:
    return [(b.orderid, b.qty) for b in sorted(product.backorders, key=lambda b: b.place())]


def allocated(product: Product) -> dict[str, str]:
    return {line.orderid: b.reference for b in product.batches for line in b.allocations}


class TestBackorder:
    def test_a_line_no_batch_can_take_waits_when_asked_to(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 2)], version_number=4)

        allocation = product.allocate(line("o1", 5), backorder=True)

        assert allocation == Allocation(None, backordered=True)
        assert waiting(product) == [("o1", 5)]
        assert product.backordered_quantity == 5
        assert product.events == [events.OutOfStock("LAMP"), events.Backordered("o1", "LAMP", 5)]
        assert product.version_number == 5

    def test_without_asking_the_line_is_refused_and_nothing_changes(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 2)], version_number=4)
        assert product.allocate(line("o1", 5)) == Allocation(None)
        assert product.backorders == []
        assert product.version_number == 4

    def test_a_line_that_fits_is_allocated_even_when_asked_to_wait(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 2)])
        assert product.allocate(line("o1", 2), backorder=True) == Allocation("b1")
        assert product.backorders == []

    def test_repeating_a_waiting_line_is_a_no_op(self) -> None:
        product = Product("LAMP", [])
        product.allocate(line("o1", 5), backorder=True)
        product.events.clear()
        version = product.version_number

        again = product.allocate(line("o1", 5, minute=3), backorder=True)

        assert again == Allocation(None, backordered=True)
        assert (product.events, product.version_number) == ([], version)
        assert waiting(product) == [("o1", 5)]

    def test_the_same_order_and_sku_waiting_with_another_qty_is_a_conflict(self) -> None:
        product = Product("LAMP", [])
        product.allocate(line("o1", 5), backorder=True)
        with pytest.raises(LineConflict, match="qty 5"):
            product.allocate(line("o1", 6), backorder=True)


class TestFillingTheQueue:
    def test_a_new_batch_fills_waiting_lines_oldest_first(self) -> None:
        product = Product("LAMP", [])
        for orderid, minute in (("late", 2), ("first", 0), ("middle", 1)):
            product.allocate(line(orderid, 3, minute), backorder=True)
        product.events.clear()

        product.add_batch(Batch("b1", "LAMP", 7))

        assert allocated(product) == {"first": "b1", "middle": "b1"}
        assert waiting(product) == [("late", 3)]
        assert [e for e in product.events if isinstance(e, events.Allocated)] == [
            events.Allocated("first", "LAMP", 3, "b1"),
            events.Allocated("middle", "LAMP", 3, "b1"),
        ]

    def test_a_line_that_does_not_fit_is_skipped_and_keeps_its_place(self) -> None:
        product = Product("LAMP", [])
        product.allocate(line("big", 10, minute=0), backorder=True)
        product.allocate(line("small", 2, minute=1), backorder=True)

        product.add_batch(Batch("b1", "LAMP", 5))

        assert allocated(product) == {"small": "b1"}
        assert waiting(product) == [("big", 10)]
        product.add_batch(Batch("b2", "LAMP", 10))
        assert allocated(product) == {"small": "b1", "big": "b2"}
        assert product.backordered_quantity == 0

    def test_waiting_lines_take_the_best_batch_for_them(self) -> None:
        product = Product("LAMP", [Batch("shipment", "LAMP", 0, eta=SOON)])
        product.allocate(line("o1", 3), backorder=True)
        product.add_batch(Batch("warehouse", "LAMP", 5))
        assert allocated(product) == {"o1": "warehouse"}

    def test_a_larger_batch_quantity_fills_the_queue(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 1)])
        product.allocate(line("o1", 4), backorder=True)
        product.change_batch_quantity("b1", 4)
        assert allocated(product) == {"o1": "b1"}
        assert product.backorders == []

    def test_a_displaced_line_keeps_the_place_it_was_first_accepted_at(self) -> None:
        batch = Batch("b1", "LAMP", 6)
        product = Product("LAMP", [batch])
        product.allocate(line("early", 6, minute=0))
        product.allocate(line("later", 6, minute=5), backorder=True)

        product.change_batch_quantity("b1", 0)
        assert waiting(product) == [("early", 6), ("later", 6)]
        product.change_batch_quantity("b1", 6)

        assert allocated(product) == {"early": "b1"}
        assert waiting(product) == [("later", 6)]

    def test_a_displaced_line_that_waits_is_announced_as_backordered(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 6)])
        product.allocate(line("o1", 6))
        product.events.clear()

        product.change_batch_quantity("b1", 2)

        assert product.events == [
            events.Deallocated("o1", "LAMP", 6, "b1", "batch_reduced"),
            events.OutOfStock("LAMP"),
            events.Backordered("o1", "LAMP", 6),
            events.BackInStock("LAMP", 2),
        ]


class TestCancel:
    def test_cancelling_an_allocated_line_frees_its_stock(self) -> None:
        batch = Batch("b1", "LAMP", 10)
        product = Product("LAMP", [batch])
        product.allocate(line("o1", 4))
        product.events.clear()
        version = product.version_number

        release = product.cancel("o1")

        assert release == Release(OrderLine("o1", "LAMP", 4), "b1")
        assert batch.available_quantity == 10
        assert product.events == [events.Deallocated("o1", "LAMP", 4, "b1", "cancelled")]
        assert product.version_number == version + 1

    def test_freed_stock_goes_to_the_queue_in_the_same_change(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 5)])
        product.allocate(line("holder", 5))
        product.allocate(line("waiter", 3, minute=1), backorder=True)
        product.events.clear()
        version = product.version_number

        product.cancel("holder")

        assert allocated(product) == {"waiter": "b1"}
        assert product.backorders == []
        assert product.events == [
            events.Deallocated("holder", "LAMP", 5, "b1", "cancelled"),
            events.Allocated("waiter", "LAMP", 3, "b1"),
            events.BackInStock("LAMP", 2),
        ]
        assert product.version_number == version + 1

    def test_a_cancelled_line_is_not_allocated_again(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 5)])
        product.allocate(line("o1", 5))
        product.cancel("o1")
        assert allocated(product) == {}
        assert product.backorders == []

    def test_cancelling_a_waiting_line_leaves_the_queue(self) -> None:
        product = Product("LAMP", [])
        product.allocate(line("o1", 5), backorder=True)
        product.allocate(line("o2", 1, minute=1), backorder=True)
        product.events.clear()

        release = product.cancel("o1")

        assert release == Release(OrderLine("o1", "LAMP", 5), None)
        assert waiting(product) == [("o2", 1)]
        assert product.backordered_quantity == 1
        assert product.events == [events.BackorderCancelled("o1", "LAMP", 5)]

    def test_cancelling_a_line_the_order_does_not_have_changes_nothing(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 5)], version_number=3)
        with pytest.raises(UnknownLine, match="Order o9 has no line for sku LAMP"):
            product.cancel("o9")
        assert (product.version_number, product.events) == (3, [])


class TestSellingOut:
    def test_the_last_unit_going_is_sold_out_once(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 3)])
        product.allocate(line("o1", 2))
        assert not any(isinstance(e, events.SoldOut) for e in product.events)
        product.allocate(line("o2", 1))
        assert product.events[-1] == events.SoldOut("LAMP")
        product.allocate(line("o3", 1), backorder=True)
        assert [e for e in product.events if isinstance(e, events.SoldOut)] == [
            events.SoldOut("LAMP")
        ]

    def test_stock_coming_back_is_announced_with_what_is_available(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 1)])
        product.allocate(line("o1", 1))
        product.events.clear()

        product.cancel("o1")

        assert product.events[-1] == events.BackInStock("LAMP", 1)

    def test_stock_taken_at_once_by_the_queue_is_no_return(self) -> None:
        product = Product("LAMP", [])
        product.allocate(line("o1", 4), backorder=True)
        product.events.clear()

        product.add_batch(Batch("b1", "LAMP", 4))

        assert not any(isinstance(e, (events.BackInStock, events.SoldOut)) for e in product.events)

    def test_a_refused_line_announces_no_transition(self) -> None:
        product = Product("LAMP", [Batch("b1", "LAMP", 0)])
        product.allocate(line("o1", 1))
        assert product.events == [events.OutOfStock("LAMP")]
