"""The repository and the mapping against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Session

from allocation.adapters.unit_of_work import SqlAlchemyUnitOfWork
from allocation.domain import model
from tests.integration.conftest import rows, scalar


def save(engine: Engine, product: model.Product) -> None:
    with SqlAlchemyUnitOfWork(engine) as uow:
        uow.products.add(product)
        uow.commit()


def test_saves_and_loads_a_product_with_its_batches_and_allocations(engine: Engine) -> None:
    product = model.Product("SOFA")
    product.add_batch(model.Batch("b-ship", "SOFA", 50, date(2030, 1, 1)))
    product.add_batch(model.Batch("b-stock", "SOFA", 20))
    product.allocate(model.OrderLine("o1", "SOFA", 5))
    save(engine, product)

    with SqlAlchemyUnitOfWork(engine) as uow:
        loaded = uow.products.get("SOFA", orderid="o1")
        assert loaded is not None
        assert loaded.version_number == 3
        assert loaded.events == []
        ship, stock = loaded.batches
        assert (ship.reference, ship.eta, ship.available_quantity) == (
            "b-ship",
            date(2030, 1, 1),
            50,
        )
        assert (stock.reference, stock.eta, stock.available_quantity) == ("b-stock", None, 15)
        assert stock.allocations == {model.OrderLine("o1", "SOFA", 5)}


def test_finds_a_product_by_batch_reference(engine: Engine) -> None:
    for sku, ref in (("LAMP", "lamp-1"), ("RUG", "rug-1")):
        product = model.Product(sku)
        product.add_batch(model.Batch(ref, sku, 1))
        save(engine, product)

    with SqlAlchemyUnitOfWork(engine) as uow:
        found = uow.products.get_by_batchref("rug-1")
        assert found is not None and found.sku == "RUG"
        assert uow.products.get_by_batchref("nope") is None
        assert uow.products.get("NOPE") is None
        assert uow.products.seen == {found}


def test_a_load_without_lines_refuses_to_touch_them(engine: Engine) -> None:
    product = model.Product("LAMP")
    product.add_batch(model.Batch("b1", "LAMP", 10))
    product.allocate(model.OrderLine("o1", "LAMP", 1))
    save(engine, product)

    with SqlAlchemyUnitOfWork(engine) as uow:
        loaded = uow.products.get("LAMP")
        assert loaded is not None
        [batch] = loaded.batches
        assert batch.allocated_quantity == 1  # the count is read, the lines are not
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            loaded.allocate(model.OrderLine("o2", "LAMP", 1))


def test_shrinking_a_batch_deletes_the_lines_it_gives_up(engine: Engine) -> None:
    product = model.Product("VASE")
    product.add_batch(model.Batch("b1", "VASE", 10))
    product.allocate(model.OrderLine("o1", "VASE", 8))
    save(engine, product)

    with SqlAlchemyUnitOfWork(engine) as uow:
        loaded = uow.products.get_by_batchref("b1")
        assert loaded is not None
        loaded.change_batch_quantity("b1", 5)
        uow.commit()

    assert rows(engine, "SELECT orderid FROM allocations") == []
    assert rows(engine, "SELECT purchased_quantity, allocated_quantity FROM batches") == [(5, 0)]


def test_a_line_moving_to_another_batch_keeps_one_row(engine: Engine) -> None:
    product = model.Product("VASE")
    product.add_batch(model.Batch("b1", "VASE", 10))
    product.add_batch(model.Batch("b2", "VASE", 10, date(2030, 1, 1)))
    product.allocate(model.OrderLine("o1", "VASE", 8))
    save(engine, product)

    with SqlAlchemyUnitOfWork(engine) as uow:
        loaded = uow.products.get_by_batchref("b1")
        assert loaded is not None
        loaded.change_batch_quantity("b1", 5)
        uow.commit()

    assert rows(
        engine,
        "SELECT a.orderid, b.reference FROM allocations a JOIN batches b ON b.id = a.batch_id",
    ) == [("o1", "b2")]
    assert rows(engine, "SELECT allocated_quantity FROM batches ORDER BY id") == [(0,), (8,)]


def product_with_lines(engine: Engine, count: int) -> None:
    product = model.Product("BUSY")
    product.add_batch(model.Batch("busy-1", "BUSY", count + 10))
    for i in range(count):
        product.allocate(model.OrderLine(f"o{i}", "BUSY", 1))
    save(engine, product)


def lines_in_memory(session: Session | None) -> list[model.OrderLine]:
    assert session is not None
    return [obj for obj in session.identity_map.values() if isinstance(obj, model.OrderLine)]


def test_the_allocate_path_loads_only_the_orders_own_lines(engine: Engine) -> None:
    product_with_lines(engine, 300)

    with SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.get("BUSY", orderid="new-order")
        assert product is not None
        assert lines_in_memory(uow.session) == []  # none of the 300 other lines was read
        assert product.allocate(model.OrderLine("new-order", "BUSY", 4)) == "busy-1"
        uow.commit()

    with SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.get("BUSY", orderid="o7")
        assert product is not None
        assert lines_in_memory(uow.session) == [model.OrderLine("o7", "BUSY", 1)]
        [batch] = product.batches
        assert (batch.allocated_quantity, batch.available_quantity) == (304, 6)
        version = product.version_number
        assert product.allocate(model.OrderLine("o7", "BUSY", 1)) == "busy-1"  # a repeat
        assert product.version_number == version


def test_shrinking_a_batch_reads_its_lines_and_keeps_the_count(engine: Engine) -> None:
    product_with_lines(engine, 20)
    with SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.get_by_batchref("busy-1")
        assert product is not None
        product.change_batch_quantity("busy-1", 15)
        uow.commit()

    counted = scalar(engine, "SELECT allocated_quantity FROM batches")
    summed = scalar(engine, "SELECT sum(qty) FROM allocations")
    assert counted == summed == 15
