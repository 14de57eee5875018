"""The domain's rules for holds: placing, extending, releasing, confirming, expiring,
and giving way when a batch shrinks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from allocation.domain import events
from allocation.domain.exceptions import HoldConflict, UnknownHold
from allocation.domain.holds import Hold
from allocation.domain.model import Allocation, Batch, OrderLine, Product

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=15)
SOON = date(2026, 12, 10)


def product(*batches: Batch) -> Product:
    return Product("LAMP", list(batches))


def placed(target: Product, holdid: str, qty: int, at: datetime = NOW) -> Hold:
    hold = target.place_hold(holdid, qty, at + timedelta(minutes=15), at)
    assert hold is not None
    target.events.clear()
    return hold


def waiting_line(orderid: str, qty: int, minute: int = 0) -> OrderLine:
    return OrderLine(orderid, "LAMP", qty, accepted_at=NOW + timedelta(minutes=minute))


class TestPlacing:
    def test_takes_its_units_from_the_batch_an_allocation_would_choose(self) -> None:
        warehouse, shipment = Batch("stock", "LAMP", 5), Batch("ship", "LAMP", 50, eta=SOON)
        lamp = product(shipment, warehouse)

        hold = lamp.place_hold("h1", 3, LATER, NOW)

        assert hold is not None
        assert (hold.batchref, hold.status, hold.expires_at) == ("stock", "active", LATER)
        assert (warehouse.held_quantity, warehouse.available_quantity) == (3, 2)
        assert lamp.events == [events.HoldPlaced("h1", "LAMP", 3, "stock", LATER)]
        assert lamp.version_number == 1

    def test_held_units_count_as_taken_for_allocations_and_availability(self) -> None:
        lamp = product(Batch("stock", "LAMP", 5))
        placed(lamp, "h1", 4)

        assert lamp.allocate(OrderLine("o1", "LAMP", 2)) == Allocation(None)
        availability = lamp.availability()
        assert (availability.available, availability.held) == (1, 4)
        assert availability.promise(2).can_allocate is False

    def test_a_hold_no_batch_can_take_whole_is_refused_and_never_waits(self) -> None:
        lamp = product(Batch("a", "LAMP", 2), Batch("b", "LAMP", 2, eta=SOON))

        assert lamp.place_hold("h1", 3, LATER, NOW) is None

        assert lamp.holds == [] and lamp.backorders == []
        assert lamp.events == [events.OutOfStock("LAMP")]
        assert lamp.version_number == 0

    def test_placing_it_again_while_active_changes_nothing_not_even_its_expiry(self) -> None:
        lamp = product(Batch("stock", "LAMP", 5))
        placed(lamp, "h1", 2)
        version = lamp.version_number

        again = lamp.place_hold("h1", 2, LATER + timedelta(hours=1), NOW + timedelta(minutes=1))

        assert again is not None and again.expires_at == LATER
        assert lamp.version_number == version and lamp.events == []
        assert lamp.batches[0].held_quantity == 2

    def test_placing_it_again_with_another_quantity_conflicts(self) -> None:
        lamp = product(Batch("stock", "LAMP", 5))
        placed(lamp, "h1", 2)
        with pytest.raises(HoldConflict, match="was placed for 2"):
            lamp.place_hold("h1", 3, LATER, NOW)

    def test_placing_a_hold_that_has_ended_conflicts(self) -> None:
        lamp = product(Batch("stock", "LAMP", 5))
        placed(lamp, "h1", 2)
        lamp.release_hold("h1", NOW)
        with pytest.raises(HoldConflict, match="has ended"):
            lamp.place_hold("h1", 2, LATER, NOW)


class TestExtending:
    def test_moves_the_expiry_of_an_active_hold(self) -> None:
        lamp = product(Batch("stock", "LAMP", 5))
        placed(lamp, "h1", 2)
        new_expiry = NOW + timedelta(hours=1)

        assert lamp.extend_hold("h1", new_expiry, NOW + timedelta(minutes=5)).expires_at == (
            new_expiry
        )
        assert lamp.version_number == 2

    def test_a_hold_past_its_expiry_cannot_be_extended(self) -> None:
        lamp = product(Batch("stock", "LAMP", 5))
        placed(lamp, "h1", 2)
        with pytest.raises(HoldConflict, match="it is expired"):
            lamp.extend_hold("h1", LATER + timedelta(hours=1), LATER)


class TestReleasing:
    def test_gives_the_units_back_to_the_waiting_lines_oldest_first(self) -> None:
        lamp = product(Batch("stock", "LAMP", 3))
        placed(lamp, "h1", 3)
        lamp.allocate(waiting_line("late", 2, minute=5), backorder=True)
        lamp.allocate(waiting_line("early", 2, minute=1), backorder=True)
        lamp.events.clear()

        hold = lamp.release_hold("h1", NOW)

        assert hold.status == "released"
        assert [line.orderid for line in lamp.batches[0].allocations] == ["early"]
        assert lamp.events[:2] == [
            events.HoldEnded("h1", "LAMP", 3, "released"),
            events.Allocated("early", "LAMP", 2, "stock"),
        ]

    def test_releasing_it_again_changes_nothing(self) -> None:
        lamp = product(Batch("stock", "LAMP", 3))
        placed(lamp, "h1", 3)
        lamp.release_hold("h1", NOW)
        version, events_before = lamp.version_number, list(lamp.events)

        assert lamp.release_hold("h1", NOW).status == "released"
        assert (lamp.version_number, lamp.events) == (version, events_before)

    @pytest.mark.parametrize("end", ["confirmed", "expired"])
    def test_a_confirmed_or_expired_hold_cannot_be_released(self, end: str) -> None:
        lamp = product(Batch("stock", "LAMP", 3))
        placed(lamp, "h1", 3)
        if end == "confirmed":
            lamp.confirm_hold("h1", "o1", NOW)
        else:
            lamp.expire_holds(LATER)
        with pytest.raises(HoldConflict, match=f"it is {end}"):
            lamp.release_hold("h1", NOW)

    def test_an_unknown_hold_is_unknown(self) -> None:
        with pytest.raises(UnknownHold):
            product(Batch("stock", "LAMP", 3)).release_hold("nope", NOW)


class TestConfirming:
    def test_allocates_the_order_line_to_the_holds_batch(self) -> None:
        lamp = product(Batch("stock", "LAMP", 3), Batch("ship", "LAMP", 9, eta=SOON))
        placed(lamp, "h1", 2)

        assert lamp.confirm_hold("h1", "o1", NOW) == Allocation("stock")

        stock = lamp.batches[0]
        assert (stock.held_quantity, stock.allocated_quantity) == (0, 2)
        assert lamp.holds[0].status == "confirmed" and lamp.holds[0].orderid == "o1"
        assert lamp.events == [
            events.HoldEnded("h1", "LAMP", 2, "confirmed", "o1"),
            events.Allocated("o1", "LAMP", 2, "stock"),
        ]

    def test_confirming_it_again_answers_the_same_and_changes_nothing(self) -> None:
        lamp = product(Batch("stock", "LAMP", 3))
        placed(lamp, "h1", 2)
        lamp.confirm_hold("h1", "o1", NOW)
        version = lamp.version_number

        assert lamp.confirm_hold("h1", "o1", NOW) == Allocation("stock")
        assert lamp.version_number == version
        with pytest.raises(HoldConflict):
            lamp.confirm_hold("h1", "another-order", NOW)

    def test_a_hold_past_its_expiry_cannot_be_confirmed_though_not_yet_expired(self) -> None:
        lamp = product(Batch("stock", "LAMP", 3))
        hold = placed(lamp, "h1", 2)

        with pytest.raises(HoldConflict, match="it is expired"):
            lamp.confirm_hold("h1", "o1", hold.expires_at)
        assert hold.status == "active" and lamp.batches[0].allocated_quantity == 0

    def test_an_order_that_already_has_the_sku_cannot_take_the_hold(self) -> None:
        lamp = product(Batch("stock", "LAMP", 5))
        lamp.allocate(OrderLine("o1", "LAMP", 1))
        placed(lamp, "h1", 2)
        with pytest.raises(HoldConflict, match="order o1 has sku LAMP"):
            lamp.confirm_hold("h1", "o1", NOW)
        assert lamp.holds[0].status == "active"


class TestExpiring:
    def test_a_hold_is_due_at_its_expiry_not_before(self) -> None:
        lamp = product(Batch("stock", "LAMP", 3))
        hold = placed(lamp, "h1", 2)

        assert lamp.expire_holds(hold.expires_at - timedelta(microseconds=1)) == []
        assert lamp.version_number == 1 and hold.status == "active"
        assert lamp.expire_holds(hold.expires_at) == [hold]
        assert hold.status == "expired" and lamp.batches[0].held_quantity == 0
        assert lamp.events == [events.HoldEnded("h1", "LAMP", 2, "expired")]

    def test_expired_units_fill_the_waiting_lines(self) -> None:
        lamp = product(Batch("stock", "LAMP", 2))
        placed(lamp, "h1", 2)
        lamp.allocate(waiting_line("o1", 2), backorder=True)

        lamp.expire_holds(LATER)

        assert [line.orderid for line in lamp.batches[0].allocations] == ["o1"]
        assert lamp.backorders == []

    def test_a_hold_is_seen_expired_as_soon_as_its_time_is_up(self) -> None:
        hold = placed(product(Batch("stock", "LAMP", 3)), "h1", 2)
        assert hold.seen_at(LATER - timedelta(seconds=1)).status == "active"
        assert hold.seen_at(LATER).status == "expired"


class TestShrinkingBatches:
    def test_a_hold_moves_whole_to_another_batch_before_any_line_leaves(self) -> None:
        stock, ship = Batch("stock", "LAMP", 5), Batch("ship", "LAMP", 4, eta=SOON)
        lamp = product(stock, ship)
        lamp.allocate(OrderLine("o1", "LAMP", 2))
        placed(lamp, "h1", 3)

        lamp.change_batch_quantity("stock", 2)

        assert lamp.holds[0].batchref == "ship" and lamp.holds[0].status == "active"
        assert [line.orderid for line in stock.allocations] == ["o1"]
        assert (stock.held_quantity, ship.held_quantity) == (0, 3)

    def test_a_hold_no_batch_can_take_ends_as_released_by_batch_reduction(self) -> None:
        stock = Batch("stock", "LAMP", 5)
        lamp = product(stock)
        lamp.allocate(OrderLine("o1", "LAMP", 2))
        placed(lamp, "h1", 3)

        lamp.change_batch_quantity("stock", 2)

        assert lamp.holds[0].status == "released"
        assert events.HoldEnded("h1", "LAMP", 3, "batch_reduced") in lamp.events
        assert [line.orderid for line in stock.allocations] == ["o1"]
        assert stock.available_quantity == 0

    def test_the_hold_placed_last_gives_way_first(self) -> None:
        lamp = product(Batch("stock", "LAMP", 4))
        placed(lamp, "first", 2, at=NOW)
        placed(lamp, "second", 2, at=NOW + timedelta(seconds=1))

        lamp.change_batch_quantity("stock", 2)

        assert {h.holdid: h.status for h in lamp.holds} == {
            "first": "active",
            "second": "released",
        }


class TestMovements:
    def test_every_change_of_available_stock_is_a_numbered_movement(self) -> None:
        lamp = product()
        lamp.add_batch(Batch("stock", "LAMP", 10))
        lamp.allocate(OrderLine("o1", "LAMP", 3))
        placed(lamp, "h1", 2)
        lamp.confirm_hold("h1", "o2", NOW)
        lamp.change_batch_quantity("stock", 4)  # o2 (the last order id) leaves, and waits
        lamp.cancel("o1")  # o1's units go to o2

        moved = [(m.seq, m.kind, m.qty, m.version, m.reason) for m in lamp.movements]
        assert moved == [
            (1, "batch_added", 10, 1, "new_batch"),
            (2, "allocated", -3, 2, "allocated"),
            (3, "hold_placed", -2, 3, "placed"),
            (4, "hold_ended", 2, 4, "confirmed"),
            (5, "allocated", -2, 4, "hold_confirmed"),
            (6, "batch_changed", -6, 5, "quantity_changed"),
            (7, "deallocated", 2, 5, "batch_reduced"),
            (8, "deallocated", 3, 6, "cancelled"),
            (9, "allocated", -2, 6, "backorder_filled"),
        ]
        assert sum(m.qty for m in lamp.movements) == lamp.available_quantity == 2

    def test_a_change_that_frees_nothing_records_nothing(self) -> None:
        lamp = product(Batch("stock", "LAMP", 3))
        placed(lamp, "h1", 1)
        lamp.movements.clear()
        lamp.extend_hold("h1", LATER + timedelta(hours=1), NOW)
        lamp.allocate(OrderLine("o1", "LAMP", 9), backorder=True)
        assert lamp.movements == []

    def test_movements_name_the_order_and_hold_they_concern(self) -> None:
        lamp = product(Batch("stock", "LAMP", 3))
        placed(lamp, "h1", 1)
        lamp.confirm_hold("h1", "o1", NOW)
        ended, allocated = lamp.movements[-2:]
        assert (ended.holdid, ended.orderid) == ("h1", "o1")
        assert (allocated.holdid, allocated.orderid, allocated.batchref) == ("h1", "o1", "stock")
