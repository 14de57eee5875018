"""The repository's contract, run against the fake, SQLite and PostgreSQL.

Each load reads a stated part of a product; what it leaves out cannot be
touched. Changes reach storage at commit, whatever was loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest
from sqlalchemy import Engine

from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.domain import model
from allocation.service_layer.unit_of_work import AbstractUnitOfWork
from tests.fakes import FakeStore, FakeUnitOfWork

UnitOfWorkFactory = Callable[[], AbstractUnitOfWork]


@pytest.fixture(params=["fake", "sqlite", "postgres"])
def uow_factory(request: pytest.FixtureRequest) -> UnitOfWorkFactory:
    if request.param == "fake":
        store = FakeStore()
        return lambda: FakeUnitOfWork(store)
    engine: Engine = request.getfixturevalue(f"{request.param}_engine")
    return lambda: SqlAlchemyUnitOfWork(engine)


def save(uow_factory: UnitOfWorkFactory, product: model.Product) -> None:
    with uow_factory() as uow:
        uow.products.add(product)
        uow.commit()


def sofa() -> model.Product:
    product = model.Product("SOFA")
    product.add_batch(model.Batch("b-ship", "SOFA", 50, date(2030, 1, 1)))
    product.add_batch(model.Batch("b-stock", "SOFA", 20))
    product.allocate(model.OrderLine("o1", "SOFA", 5))
    product.allocate(model.OrderLine("o2", "SOFA", 3))
    return product


def lines(product: model.Product) -> dict[str, set[model.OrderLine]]:
    return {batch.reference: set(batch.allocations) for batch in product.batches}


def test_for_allocation_holds_only_that_orders_lines(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.for_allocation("SOFA", "o1")
        assert loaded is not None
        assert (loaded.version_number, loaded.events) == (4, [])
        assert lines(loaded) == {"b-ship": set(), "b-stock": {model.OrderLine("o1", "SOFA", 5)}}
        ship, stock = loaded.batches
        assert (ship.reference, ship.eta, ship.available_quantity) == (
            "b-ship",
            date(2030, 1, 1),
            50,
        )
        assert (stock.reference, stock.eta, stock.allocated_quantity) == ("b-stock", None, 8)
        assert uow.products.for_allocation("NOPE", "o1") is None


def test_get_reads_no_lines_and_refuses_to_touch_them(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.get("SOFA")
        assert loaded is not None
        assert [b.allocated_quantity for b in loaded.batches] == [0, 8]
        with pytest.raises(Exception, match="lazy='raise'|did not read"):
            loaded.allocate(model.OrderLine("o3", "SOFA", 1))
        assert uow.products.get("NOPE") is None


def test_for_batch_change_holds_every_line(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.for_batch_change("b-ship")
        assert loaded is not None and loaded.sku == "SOFA"
        assert lines(loaded)["b-stock"] == {
            model.OrderLine("o1", "SOFA", 5),
            model.OrderLine("o2", "SOFA", 3),
        }
        assert uow.products.for_batch_change("nope") is None
        assert uow.products.has_batch("b-stock") and not uow.products.has_batch("nope")
        assert uow.products.seen == {loaded}


def test_an_allocation_on_a_partial_load_keeps_the_other_lines(
    uow_factory: UnitOfWorkFactory,
) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.for_allocation("SOFA", "o3")
        assert loaded is not None
        assert loaded.allocate(model.OrderLine("o3", "SOFA", 2)) == "b-stock"
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b-stock")
        assert everything is not None
        assert {line.orderid for line in everything.batches[1].allocations} == {"o1", "o2", "o3"}
        assert (everything.batches[1].allocated_quantity, everything.version_number) == (10, 5)


def test_a_new_batch_on_a_product_read_without_lines(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.get("SOFA")
        assert loaded is not None
        loaded.add_batch(model.Batch("b-more", "SOFA", 7))
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b-more")
        assert everything is not None
        assert [b.reference for b in everything.batches] == ["b-ship", "b-stock", "b-more"]
        assert len(everything.batches[1].allocations) == 2  # the lines were left alone


def test_a_line_moving_to_another_batch_is_stored_once(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.for_batch_change("b-stock")
        assert loaded is not None
        # Both lines leave b-stock; o2 fits back, o1 moves to the shipment.
        loaded.change_batch_quantity("b-stock", 4)
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b-stock")
        assert everything is not None
        assert lines(everything) == {
            "b-ship": {model.OrderLine("o1", "SOFA", 5)},
            "b-stock": {model.OrderLine("o2", "SOFA", 3)},
        }
        assert [b.allocated_quantity for b in everything.batches] == [5, 3]


def test_nothing_is_stored_without_commit(uow_factory: UnitOfWorkFactory) -> None:
    with uow_factory() as uow:
        uow.products.add(sofa())
    with uow_factory() as uow:
        assert uow.products.get("SOFA") is None
