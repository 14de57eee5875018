"""One set of tests for every implementation of the read model, so fakes cannot drift.

The view is written through a Unit of Work and read back through the read model,
as the service does: what one commit wrote, the next query sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine

from allocation import bootstrap
from allocation.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWork
from allocation.adapters.read_models.queries import SqlReadModel
from allocation.adapters.sql import database
from allocation.config import Settings
from allocation.domain import commands
from allocation.domain.availability import Availability, Slot
from allocation.service_layer.messagebus import MessageBus
from allocation.service_layer.ports import AbstractReadModel, OrderLineState
from allocation.service_layer.unit_of_work import AbstractUnitOfWork
from tests.fakes import FakeNotifications, FakeReadModel, FakeStore, FakeUnitOfWork


@dataclass
class Side:
    uow_factory: Callable[[], AbstractUnitOfWork]
    read_model: AbstractReadModel

    def write(self, *changes: tuple[str, str, str | None]) -> None:
        """Adds (orderid, sku, batchref) rows, or removes them when batchref is None."""
        with self.uow_factory() as uow:
            for orderid, sku, batchref in changes:
                if batchref is None:
                    uow.allocations_view.remove(orderid, sku)
                else:
                    uow.allocations_view.add(orderid, sku, batchref)
            uow.commit()


@pytest.fixture(params=["fake", "sqlite", "postgres"])
def side(request: pytest.FixtureRequest) -> Side:
    if request.param == "fake":
        store = FakeStore()
        return Side(lambda: FakeUnitOfWork(store), FakeReadModel(store))
    engine: Engine = request.getfixturevalue(f"{request.param}_engine")
    reads = database.make_engine(
        str(engine.url.render_as_string(hide_password=False)), autocommit=True
    )
    request.addfinalizer(reads.dispose)
    return Side(lambda: SqlAlchemyUnitOfWork(engine), SqlReadModel(reads))


def test_lists_an_orders_allocations_by_sku(side: Side) -> None:
    side.write(("o1", "ZEBRA", "b-z"), ("o1", "APPLE", "b-a"), ("o2", "APPLE", "b-x"))
    assert side.read_model.allocations_for_order("o1") == [
        {"sku": "APPLE", "batchref": "b-a"},
        {"sku": "ZEBRA", "batchref": "b-z"},
    ]


def test_adding_again_replaces_the_batch(side: Side) -> None:
    side.write(("o1", "LAMP", "b1"))
    side.write(("o1", "LAMP", "b2"))
    assert side.read_model.allocations_for_order("o1") == [{"sku": "LAMP", "batchref": "b2"}]


def test_removes_one_sku_of_an_order(side: Side) -> None:
    side.write(("o1", "LAMP", "b1"), ("o1", "RUG", "b2"))
    side.write(("o1", "LAMP", None), ("o1", "NEVER-THERE", None))
    assert side.read_model.allocations_for_order("o1") == [{"sku": "RUG", "batchref": "b2"}]
    assert side.read_model.allocations_for_order("unknown") == []


def test_uncommitted_rows_are_not_read(side: Side) -> None:
    with side.uow_factory() as uow:
        uow.allocations_view.add("o1", "LAMP", "b1")
    assert side.read_model.allocations_for_order("o1") == []


# The availability and order reads, after changes made through the bus.


def bus_of(side: Side) -> MessageBus:
    return bootstrap.bootstrap(
        Settings(), uow_factory=side.uow_factory, notifications=FakeNotifications()
    )


def test_availability_of_known_skus_in_the_order_asked(side: Side) -> None:
    bus = bus_of(side)
    bus.handle(commands.CreateBatch("b-late", "LAMP", 4, date(2030, 2, 1)))
    bus.handle(commands.CreateBatch("b-stock", "LAMP", 5))
    bus.handle(commands.CreateBatch("b-soon", "LAMP", 6, date(2030, 1, 1)))
    bus.handle(commands.CreateBatch("v1", "VASE", 1))
    bus.handle(commands.Allocate("o1", "LAMP", 5))
    bus.handle(commands.Allocate("o2", "VASE", 3, backorder=True))

    vase, lamp = side.read_model.availability(["VASE", "NOPE", "LAMP", "VASE"])

    assert lamp == Availability(
        "LAMP",
        4,
        (Slot(None, 0), Slot(date(2030, 1, 1), 6), Slot(date(2030, 2, 1), 4)),
        0,
    )
    assert (vase.sku, vase.available, vase.backordered) == ("VASE", 1, 3)
    assert side.read_model.availability(["NOPE"]) == []


def test_an_orders_lines_allocated_and_waiting(side: Side) -> None:
    bus = bus_of(side)
    bus.handle(commands.CreateBatch("b1", "LAMP", 5, date(2030, 1, 1)))
    bus.handle(commands.CreateBatch("v1", "VASE", 1))
    bus.handle(commands.Allocate("o1", "VASE", 2, backorder=True))
    bus.handle(commands.Allocate("o1", "LAMP", 3))

    assert side.read_model.order_lines("o1") == [
        OrderLineState("LAMP", 3, "allocated", "b1", date(2030, 1, 1)),
        OrderLineState("VASE", 2, "backordered", None, None),
    ]
    assert side.read_model.order_lines("nobody") == []


def test_the_queue_oldest_first_with_aware_times(side: Side) -> None:
    bus = bus_of(side)
    bus.handle(commands.CreateBatch("v1", "VASE", 1))
    for orderid in ("first", "second", "third"):
        bus.handle(commands.Allocate(orderid, "VASE", 2, backorder=True))
    bus.handle(commands.CancelLine("second", "VASE"))

    waiting = side.read_model.waiting_lines("VASE")

    assert [(w.orderid, w.qty) for w in waiting] == [("first", 2), ("third", 2)]
    assert all(w.since.tzinfo is not None for w in waiting)
    assert waiting[0].since <= waiting[1].since
    assert side.read_model.waiting_lines("NOPE") == []


def test_a_hold_as_the_client_sees_it(side: Side) -> None:
    bus = bus_of(side)
    bus.handle(commands.CreateBatch("b1", "LAMP", 5))
    placed = bus.handle(commands.PlaceHold("h1", "LAMP", 2, 60))
    bus.handle(commands.PlaceHold("h2", "LAMP", 1, 60))
    bus.handle(commands.ConfirmHold("h2", "o9"))

    assert side.read_model.hold("h1", placed.expires_at - timedelta(seconds=1)) == placed
    seen_late = side.read_model.hold("h1", placed.expires_at)
    assert seen_late is not None and seen_late.status == "expired"  # over, not yet expired
    confirmed = side.read_model.hold("h2", placed.expires_at)
    assert confirmed is not None and (confirmed.status, confirmed.orderid) == ("confirmed", "o9")
    assert confirmed.expires_at.tzinfo is not None
    assert side.read_model.hold("nope", placed.expires_at) is None
    [lamp] = side.read_model.availability(["LAMP"])
    assert (lamp.available, lamp.held) == (2, 2)


def test_movements_page_by_page_with_their_sources(side: Side) -> None:
    bus = bus_of(side)
    bus.handle(commands.CreateBatch("b1", "LAMP", 5), {"request_id": "r-1"})
    for orderid in ("o1", "o2", "o3"):
        bus.handle(commands.Allocate(orderid, "LAMP", 1), {"message_id": f"m-{orderid}"})

    first = side.read_model.movements("LAMP", after=0, limit=2)
    rest = side.read_model.movements("LAMP", after=first[-1].movement.seq, limit=100)

    assert [(r.movement.seq, r.movement.kind, r.movement.qty) for r in first + rest] == [
        (1, "batch_added", 5),
        (2, "allocated", -1),
        (3, "allocated", -1),
        (4, "allocated", -1),
    ]
    assert first[0].source == {"request_id": "r-1"} and rest[-1].source == {"message_id": "m-o3"}
    assert rest[-1].movement.orderid == "o3" and rest[-1].movement.version == 4
    assert all(r.at.tzinfo is not None for r in first + rest)
    assert side.read_model.movements("NOPE", after=0, limit=10) == []
    with side.uow_factory() as uow:
        assert uow.movements.sums() == {"LAMP": 2}
        assert uow.movements.sums("NOPE") == {}
