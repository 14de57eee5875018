"""One set of tests for every implementation of the read model, so fakes cannot drift.

The view is written through a Unit of Work and read back through the read model,
as the service does: what one commit wrote, the next query sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from allocation.adapters import database
from allocation.adapters.read_model import SqlReadModel
from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.service_layer.ports import AbstractReadModel
from allocation.service_layer.unit_of_work import AbstractUnitOfWork
from tests.fakes import FakeReadModel, FakeStore, FakeUnitOfWork


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
