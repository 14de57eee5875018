"""The use cases, driven through the message bus with fakes."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from allocation import bootstrap, views
from allocation.config import Settings
from allocation.domain import commands, events
from allocation.domain.exceptions import (
    ConcurrencyConflict,
    DuplicateBatch,
    InvalidSku,
    LineConflict,
    OutOfStockError,
    UnknownBatch,
    UnknownLine,
    UnknownOrder,
)
from allocation.domain.model import Allocation, OrderLine, Release
from allocation.service_layer.messagebus import MessageBus
from tests.conftest import FakeService
from tests.fakes import FakeNotifications, FakeStore, FakeUnitOfWork


def view_of(service: FakeService, orderid: str) -> list[dict[str, str]]:
    return views.allocations(orderid, service.api.read_model)


class TestAddBatch:
    def test_creates_the_product_for_a_new_sku(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("b1", "CRUNCHY-ARMCHAIR", 100, None))
        product = fake_service.store.products["CRUNCHY-ARMCHAIR"]
        assert [b.reference for b in product.batches] == ["b1"]
        assert fake_service.store.commits == 1

    def test_adds_to_an_existing_product(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("b1", "GARISH-RUG", 100, None))
        fake_service.bus.handle(commands.CreateBatch("b2", "GARISH-RUG", 99, date(2030, 1, 1)))
        refs = [b.reference for b in fake_service.store.products["GARISH-RUG"].batches]
        assert refs == ["b1", "b2"]

    def test_refuses_a_reference_used_by_any_sku(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("b1", "RUG", 100, None))
        with pytest.raises(DuplicateBatch, match="b1"):
            fake_service.bus.handle(commands.CreateBatch("b1", "LAMP", 5, None))
        assert "LAMP" not in fake_service.store.products


class TestAllocate:
    def test_returns_the_batch_and_updates_the_view(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("batch1", "COMPLICATED-LAMP", 100, None))
        allocation = fake_service.bus.handle(commands.Allocate("o1", "COMPLICATED-LAMP", 10))
        assert allocation == Allocation("batch1")
        assert view_of(fake_service, "o1") == [{"sku": "COMPLICATED-LAMP", "batchref": "batch1"}]

    def test_publishes_line_allocated(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("batch1", "LAMP", 100, None))
        fake_service.bus.handle(commands.Allocate("o1", "LAMP", 10))
        assert fake_service.published("line_allocated") == [
            {"orderid": "o1", "sku": "LAMP", "qty": 10, "batchref": "batch1"}
        ]

    def test_unknown_sku_is_invalid(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("b1", "AREALSKU", 100, None))
        with pytest.raises(InvalidSku, match="Invalid sku NONEXISTENTSKU"):
            fake_service.bus.handle(commands.Allocate("o1", "NONEXISTENTSKU", 10))

    def test_out_of_stock_raises_publishes_and_notifies(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("b1", "POPULAR-CURTAINS", 9, None))
        with pytest.raises(OutOfStockError, match="Out of stock for sku POPULAR-CURTAINS"):
            fake_service.bus.handle(commands.Allocate("o1", "POPULAR-CURTAINS", 10))
        assert fake_service.published("out_of_stock") == [{"sku": "POPULAR-CURTAINS"}]
        assert [subject for subject, _ in fake_service.notifications.sent] == [
            "Out of stock for POPULAR-CURTAINS"
        ]
        assert view_of(fake_service, "o1") == []

    def test_repeating_a_line_is_a_no_op(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("b1", "SOFA", 10, None))
        first = fake_service.bus.handle(commands.Allocate("o1", "SOFA", 4))
        second = fake_service.bus.handle(commands.Allocate("o1", "SOFA", 4))
        assert first == second == Allocation("b1")
        assert len(fake_service.published("line_allocated")) == 1
        assert fake_service.store.products["SOFA"].batches[0].available_quantity == 6

    def test_same_order_and_sku_with_other_qty_conflicts(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("b1", "SOFA", 10, None))
        fake_service.bus.handle(commands.Allocate("o1", "SOFA", 4))
        with pytest.raises(LineConflict):
            fake_service.bus.handle(commands.Allocate("o1", "SOFA", 5))
        assert view_of(fake_service, "o1") == [{"sku": "SOFA", "batchref": "b1"}]

    def test_one_order_can_allocate_several_skus(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("b-z", "ZEBRA", 10, None))
        fake_service.bus.handle(commands.CreateBatch("b-a", "APPLE", 10, None))
        fake_service.bus.handle(commands.Allocate("o1", "ZEBRA", 1))
        fake_service.bus.handle(commands.Allocate("o1", "APPLE", 1))
        assert view_of(fake_service, "o1") == [
            {"sku": "APPLE", "batchref": "b-a"},
            {"sku": "ZEBRA", "batchref": "b-z"},
        ]


class TestChangeBatchQuantity:
    def test_changes_the_available_quantity(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(commands.CreateBatch("batch1", "ADORABLE-SETTEE", 100, None))
        fake_service.bus.handle(commands.ChangeBatchQuantity("batch1", 50))
        [batch] = fake_service.store.products["ADORABLE-SETTEE"].batches
        assert batch.available_quantity == 50

    def test_reallocates_lines_to_another_batch(self, fake_service: FakeService) -> None:
        bus = fake_service.bus
        bus.handle(commands.CreateBatch("batch1", "INDIFFERENT-TABLE", 50, None))
        bus.handle(commands.CreateBatch("batch2", "INDIFFERENT-TABLE", 50, date.today()))
        bus.handle(commands.Allocate("order1", "INDIFFERENT-TABLE", 20))
        bus.handle(commands.Allocate("order2", "INDIFFERENT-TABLE", 20))

        bus.handle(commands.ChangeBatchQuantity("batch1", 25))

        batch1, batch2 = fake_service.store.products["INDIFFERENT-TABLE"].batches
        assert (batch1.available_quantity, batch2.available_quantity) == (5, 30)
        assert view_of(fake_service, "order2") == [
            {"sku": "INDIFFERENT-TABLE", "batchref": "batch2"}
        ]
        assert fake_service.published("line_allocated")[-1] == {
            "orderid": "order2",
            "sku": "INDIFFERENT-TABLE",
            "qty": 20,
            "batchref": "batch2",
        }
        assert fake_service.published("line_deallocated") == [
            {
                "orderid": "order2",
                "sku": "INDIFFERENT-TABLE",
                "qty": 20,
                "batchref": "batch1",
                "reason": "batch_reduced",
            }
        ]

    def test_a_line_with_nowhere_to_go_waits(self, fake_service: FakeService) -> None:
        bus = fake_service.bus
        bus.handle(commands.CreateBatch("only", "VASE", 10, None))
        bus.handle(commands.Allocate("o1", "VASE", 8))
        bus.handle(commands.ChangeBatchQuantity("only", 5))
        assert view_of(fake_service, "o1") == []
        assert fake_service.published("out_of_stock") == [{"sku": "VASE"}]
        assert fake_service.published("line_backordered") == [
            {"orderid": "o1", "sku": "VASE", "qty": 8}
        ]

    def test_unknown_batch_raises(self, fake_service: FakeService) -> None:
        with pytest.raises(UnknownBatch):
            fake_service.bus.handle(commands.ChangeBatchQuantity("nope", 5))


class TestBackorder:
    def test_a_line_asked_to_wait_is_kept_and_announced(self, fake_service: FakeService) -> None:
        bus = fake_service.bus
        bus.handle(commands.CreateBatch("b1", "LAMP", 2, None))

        allocation = bus.handle(commands.Allocate("o1", "LAMP", 5, backorder=True))

        assert allocation == Allocation(None, backordered=True)
        assert fake_service.published("line_backordered") == [
            {"orderid": "o1", "sku": "LAMP", "qty": 5}
        ]
        assert fake_service.published("out_of_stock") == [{"sku": "LAMP"}]
        assert [s for s, _ in fake_service.notifications.sent] == ["Out of stock for LAMP"]
        assert views.availability(["LAMP"], fake_service.api.read_model)[0].backordered == 5

    def test_waiting_lines_are_filled_oldest_first_by_a_new_batch(
        self, fake_service: FakeService
    ) -> None:
        bus = fake_service.bus
        bus.handle(commands.CreateBatch("b0", "LAMP", 1, None))
        bus.handle(commands.Allocate("taker", "LAMP", 1))
        for orderid in ("first", "second", "third"):
            bus.handle(commands.Allocate(orderid, "LAMP", 2, backorder=True))

        bus.handle(commands.CreateBatch("b1", "LAMP", 4, None))

        filled = [m["orderid"] for m in fake_service.published("line_allocated")]
        assert filled == ["taker", "first", "second"]
        assert view_of(fake_service, "first") == [{"sku": "LAMP", "batchref": "b1"}]
        waiting = views.queue("LAMP", fake_service.api.read_model)
        assert [w.orderid for w in waiting or []] == ["third"]


class TestCancel:
    def test_cancelling_a_line_frees_stock_for_the_waiting(self, fake_service: FakeService) -> None:
        bus = fake_service.bus
        bus.handle(commands.CreateBatch("b1", "LAMP", 3, None))
        bus.handle(commands.Allocate("holder", "LAMP", 3))
        bus.handle(commands.Allocate("waiter", "LAMP", 2, backorder=True))
        commits = fake_service.store.commits

        release = bus.handle(commands.CancelLine("holder", "LAMP"))

        assert release == Release(OrderLine("holder", "LAMP", 3), "b1")
        assert fake_service.store.commits == commits + 1  # one transaction
        assert view_of(fake_service, "holder") == []
        assert view_of(fake_service, "waiter") == [{"sku": "LAMP", "batchref": "b1"}]
        assert fake_service.published("line_deallocated") == [
            {"orderid": "holder", "sku": "LAMP", "qty": 3, "batchref": "b1", "reason": "cancelled"}
        ]
        [lamp] = views.availability(["LAMP"], fake_service.api.read_model)
        assert (lamp.available, lamp.backordered) == (1, 0)

    def test_cancelling_a_line_the_order_lacks_is_unknown_and_writes_nothing(
        self, fake_service: FakeService
    ) -> None:
        fake_service.bus.handle(commands.CreateBatch("b1", "LAMP", 3, None))
        commits = fake_service.store.commits
        with pytest.raises(UnknownLine):
            fake_service.bus.handle(commands.CancelLine("nobody", "LAMP"))
        with pytest.raises(UnknownLine):
            fake_service.bus.handle(commands.CancelLine("nobody", "NO-SUCH-SKU"))
        assert fake_service.store.commits == commits

    def test_cancelling_an_order_releases_every_line(self, fake_service: FakeService) -> None:
        bus = fake_service.bus
        bus.handle(commands.CreateBatch("b1", "LAMP", 3, None))
        bus.handle(commands.CreateBatch("b2", "VASE", 1, None))
        bus.handle(commands.Allocate("o1", "LAMP", 2))
        bus.handle(commands.Allocate("o1", "VASE", 5, backorder=True))

        releases = bus.handle(commands.CancelOrder("o1"))

        assert releases == [
            Release(OrderLine("o1", "LAMP", 2), "b1"),
            Release(OrderLine("o1", "VASE", 5), None),
        ]
        assert views.order("o1", fake_service.api.read_model) == []
        with pytest.raises(UnknownOrder):
            bus.handle(commands.CancelOrder("o1"))


class TestSellingOut:
    def test_one_message_per_transition(self, fake_service: FakeService) -> None:
        bus = fake_service.bus
        bus.handle(commands.CreateBatch("b1", "LAMP", 2, None))
        bus.handle(commands.Allocate("o1", "LAMP", 1))
        bus.handle(commands.Allocate("o2", "LAMP", 1))
        bus.handle(commands.Allocate("o3", "LAMP", 1, backorder=True))
        bus.handle(commands.CancelLine("o1", "LAMP"))  # o3 takes the unit at once
        bus.handle(commands.CancelLine("o2", "LAMP"))

        assert fake_service.published("sold_out") == [{"sku": "LAMP"}]
        assert fake_service.published("back_in_stock") == [
            {"sku": "LAMP", "available": 2},  # the first batch
            {"sku": "LAMP", "available": 1},
        ]


class TestMessageBus:
    def test_retries_a_command_after_a_concurrency_conflict(
        self, fake_service: FakeService
    ) -> None:
        fake_service.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
        fake_service.store.conflicts_to_raise = 2
        assert fake_service.bus.handle(commands.Allocate("o1", "LAMP", 1)).batchref == "b1"
        assert len(fake_service.published("line_allocated")) == 1

    def test_gives_up_after_the_configured_attempts(self) -> None:
        store = FakeStore(conflicts_to_raise=3)
        bus = bootstrap.bootstrap(
            Settings(commit_attempts=3),
            uow_factory=lambda: FakeUnitOfWork(store),
            notifications=FakeNotifications(),
        )
        with pytest.raises(ConcurrencyConflict):
            bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
        assert store.commits == 0

    def test_a_failed_commit_writes_no_outbox_message_and_releases_no_event(self) -> None:
        store = FakeStore()
        notifications = FakeNotifications()
        bus = bootstrap.bootstrap(
            Settings(commit_attempts=1),
            uow_factory=lambda: FakeUnitOfWork(store),
            notifications=notifications,
        )
        bus.handle(commands.CreateBatch("b1", "LAMP", 1, None))
        outbox_before = list(store.outbox)
        store.conflicts_to_raise = 1
        with pytest.raises(ConcurrencyConflict):
            bus.handle(commands.Allocate("o1", "LAMP", 2))
        assert store.outbox == outbox_before
        assert notifications.sent == []

    def test_a_failing_event_handler_does_not_stop_the_others(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        store = FakeStore()
        handled: list[events.Event] = []

        def broken(event: events.Event, uow: object) -> None:
            raise ConnectionError("mail server is down")

        def recording(event: events.Event, uow: object) -> None:
            handled.append(event)

        bus = MessageBus(
            uow_factory=lambda: FakeUnitOfWork(store),
            event_handlers={events.OutOfStock: [broken, recording]},
            command_handlers=bootstrap.COMMAND_HANDLERS,
        )
        bus.handle(commands.CreateBatch("b1", "LAMP", 1, None))
        with caplog.at_level(logging.ERROR), pytest.raises(OutOfStockError):
            bus.handle(commands.Allocate("o1", "LAMP", 2))
        assert handled == [events.OutOfStock("LAMP")]
        assert "mail server is down" in caplog.text

    def test_handles_a_bare_event(self, fake_service: FakeService) -> None:
        fake_service.bus.handle(events.OutOfStock("LAMP"))
        assert [s for s, _ in fake_service.notifications.sent] == ["Out of stock for LAMP"]
