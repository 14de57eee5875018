"""What only the SQL repository can show: what it keeps in memory, and its rows."""

from __future__ import annotations

from sqlalchemy import Engine

from allocation.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWork
from allocation.domain import model
from tests.integration.conftest import rows, scalar


def product_with_lines(engine: Engine, count: int) -> None:
    product = model.Product("BUSY")
    product.add_batch(model.Batch("busy-1", "BUSY", count + 10))
    for i in range(count):
        product.allocate(model.OrderLine(f"o{i}", "BUSY", 1))
    with SqlAlchemyUnitOfWork(engine) as uow:
        uow.products.add(product)
        uow.commit()


def lines_in_memory(product: model.Product) -> list[model.OrderLine]:
    """Every order line the load made (none is kept anywhere but in its batch)."""
    return [line for batch in product.batches for line in batch.allocations]


def test_the_allocate_path_reads_only_the_orders_own_lines(engine: Engine) -> None:
    product_with_lines(engine, 300)

    with SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.for_allocation("BUSY", "new-order")
        assert product is not None
        assert lines_in_memory(product) == []  # none of the 300 other lines was read
        assert product.allocate(model.OrderLine("new-order", "BUSY", 4)).batchref == "busy-1"
        uow.commit()

    with SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.for_allocation("BUSY", "o7")
        assert product is not None
        assert lines_in_memory(product) == [model.OrderLine("o7", "BUSY", 1)]
        [batch] = product.batches
        assert (batch.allocated_quantity, batch.available_quantity) == (304, 6)
        version = product.version_number
        assert product.allocate(model.OrderLine("o7", "BUSY", 1)).batchref == "busy-1"  # repeat
        assert product.version_number == version


def test_shrinking_a_batch_keeps_its_count_equal_to_its_rows(engine: Engine) -> None:
    product_with_lines(engine, 20)
    with SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.for_batch_change("busy-1")
        assert product is not None
        product.change_batch_quantity("busy-1", 15)
        uow.commit()

    counted = scalar(engine, "SELECT allocated_quantity FROM batches")
    summed = scalar(engine, "SELECT sum(qty) FROM allocations")
    assert counted == summed == 15
    assert rows(engine, "SELECT count(*) FROM allocations") == [(15,)]
