"""The Unit of Work writes the read model and the outbox in the transaction of the change."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, text

from allocation.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWork
from allocation.domain import commands, model
from allocation.domain.exceptions import OutOfStockError
from allocation.service_layer import relay
from allocation.service_layer.read_model import rebuild_views
from tests.fakes import FakePublisher
from tests.integration.conftest import bus_for, rows


def test_allocation_commits_view_row_and_outbox_message_together(
    engine: Engine,
) -> None:
    bus = bus_for(engine)
    bus.handle(commands.CreateBatch("b1", "LAMP", 10))
    bus.handle(commands.Allocate("o1", "LAMP", 2))
    with pytest.raises(OutOfStockError):
        bus.handle(commands.Allocate("o2", "LAMP", 20))
    assert rows(engine, "SELECT orderid, sku, batchref FROM allocations_view") == [
        ("o1", "LAMP", "b1")
    ]
    assert rows(engine, "SELECT channel, sent_at FROM outbox ORDER BY id") == [
        ("back_in_stock", None),  # the SKU's first stock
        ("line_allocated", None),
        ("out_of_stock", None),
    ]


def test_a_rolled_back_change_leaves_no_view_row_or_message(
    engine: Engine,
) -> None:
    bus_for(engine).handle(commands.CreateBatch("b1", "LAMP", 10))
    [(outbox_rows,)] = rows(engine, "SELECT count(*) FROM outbox")
    with SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.for_allocation("LAMP", "o1")
        assert product is not None
        product.allocate(model.OrderLine("o1", "LAMP", 1))
        uow.allocations_view.add("o1", "LAMP", "b1")  # as commit would, then no commit
    assert rows(engine, "SELECT count(*) FROM allocations_view") == [(0,)]
    assert rows(engine, "SELECT count(*) FROM outbox") == [(outbox_rows,)]


def test_the_relay_publishes_in_order_and_marks_sent(
    engine: Engine,
) -> None:
    bus = bus_for(engine)
    bus.handle(commands.CreateBatch("b1", "LAMP", 10))
    for orderid in ("o1", "o2", "o3"):
        bus.handle(commands.Allocate(orderid, "LAMP", 1))
    publisher = FakePublisher()

    # back_in_stock (the SKU's first stock), then the three line_allocated
    assert len(relay.relay_pending(SqlAlchemyUnitOfWork(engine), publisher, 3)) == 3
    assert len(relay.relay_pending(SqlAlchemyUnitOfWork(engine), publisher, 3)) == 1
    assert relay.relay_pending(SqlAlchemyUnitOfWork(engine), publisher, 3) == []

    assert [p["orderid"] for p in publisher.on("line_allocated")] == ["o1", "o2", "o3"]
    assert len({p["message_id"] for p in publisher.on("line_allocated")}) == 3
    assert relay.backlog(SqlAlchemyUnitOfWork(engine)).unsent == 0
    assert relay.prune_sent(SqlAlchemyUnitOfWork(engine), timedelta(hours=1)) == 0
    assert relay.prune_sent(SqlAlchemyUnitOfWork(engine), timedelta(hours=-1)) == 4


def test_rebuild_restores_exactly_the_current_allocations(
    engine: Engine,
) -> None:
    bus = bus_for(engine)
    bus.handle(commands.CreateBatch("b1", "LAMP", 10))
    bus.handle(commands.CreateBatch("b2", "RUG", 10))
    for orderid, sku in (("o1", "LAMP"), ("o2", "LAMP"), ("o3", "RUG"), ("o1", "RUG")):
        bus.handle(commands.Allocate(orderid, sku, 1))
    expected = rows(engine, "SELECT orderid, sku, batchref FROM allocations_view ORDER BY 1, 2")
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM allocations_view WHERE orderid = 'o1'"))
        connection.execute(
            text("UPDATE allocations_view SET batchref = 'wrong' WHERE orderid = 'o2'")
        )
        connection.execute(text("INSERT INTO allocations_view VALUES ('ghost', 'LAMP', 'b1')"))

    report = rebuild_views(SqlAlchemyUnitOfWork(engine)).allocations

    assert (report.added, report.removed, report.corrected, report.unchanged) == (2, 1, 1, 1)
    assert (
        rows(engine, "SELECT orderid, sku, batchref FROM allocations_view ORDER BY 1, 2")
        == expected
    )
    again = rebuild_views(SqlAlchemyUnitOfWork(engine)).allocations
    assert (again.added, again.removed, again.corrected, again.unchanged) == (0, 0, 0, 4)


def test_rebuild_restores_exactly_the_availability(engine: Engine) -> None:
    bus = bus_for(engine)
    bus.handle(commands.CreateBatch("b1", "LAMP", 10))
    bus.handle(commands.CreateBatch("b2", "LAMP", 5, date(2030, 1, 1)))
    bus.handle(commands.CreateBatch("b3", "RUG", 1))
    bus.handle(commands.CreateBatch("b4", "VASE", 1))
    bus.handle(commands.Allocate("o1", "LAMP", 3))
    bus.handle(commands.Allocate("o2", "RUG", 4, backorder=True))
    query = "SELECT sku, version, backordered, slots FROM availability_view ORDER BY 1"
    expected = rows(engine, query)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM availability_view WHERE sku = 'LAMP'"))
        connection.execute(text("UPDATE availability_view SET slots = '[]' WHERE sku = 'RUG'"))
        connection.execute(
            text(
                "INSERT INTO availability_view (sku, version, backordered, slots)"
                " VALUES ('GHOST', 1, 0, '[]')"
            )
        )

    report = rebuild_views(SqlAlchemyUnitOfWork(engine)).availability

    assert (report.added, report.removed, report.corrected, report.unchanged) == (1, 1, 1, 1)
    assert rows(engine, query) == expected
    assert expected[1][2] == 4  # RUG's waiting units
    again = rebuild_views(SqlAlchemyUnitOfWork(engine)).availability
    assert (again.added, again.removed, again.corrected, again.unchanged) == (0, 0, 0, 3)
