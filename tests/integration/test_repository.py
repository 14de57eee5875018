"""The repository and the mapping against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from allocation.adapters.repository import SqlAlchemyRepository
from allocation.domain import model


def test_saves_and_loads_a_product_with_its_batches_and_allocations(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        repo = SqlAlchemyRepository(session)
        product = model.Product("SOFA")
        product.add_batch(model.Batch("b-ship", "SOFA", 50, date(2030, 1, 1)))
        product.add_batch(model.Batch("b-stock", "SOFA", 20))
        product.allocate(model.OrderLine("o1", "SOFA", 5))
        repo.add(product)
        session.commit()

    with session_factory() as session:
        loaded = SqlAlchemyRepository(session).get("SOFA")
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


def test_finds_a_product_by_batch_reference(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        repo = SqlAlchemyRepository(session)
        for sku, ref in (("LAMP", "lamp-1"), ("RUG", "rug-1")):
            product = model.Product(sku)
            product.add_batch(model.Batch(ref, sku, 1))
            repo.add(product)
        session.commit()

    with session_factory() as session:
        repo = SqlAlchemyRepository(session)
        found = repo.get_by_batchref("rug-1")
        assert found is not None and found.sku == "RUG"
        assert repo.get_by_batchref("nope") is None
        assert repo.get("NOPE") is None
        assert repo.seen == {found}


def test_deallocation_deletes_the_allocation_row(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        product = model.Product("VASE")
        product.add_batch(model.Batch("b1", "VASE", 10))
        product.allocate(model.OrderLine("o1", "VASE", 8))
        SqlAlchemyRepository(session).add(product)
        session.commit()

    with session_factory() as session:
        product = SqlAlchemyRepository(session).get("VASE")
        assert product is not None
        product.change_batch_quantity("b1", 5)
        session.commit()

    with session_factory() as session:
        rows = session.execute(text("SELECT orderid FROM allocations")).all()
        assert rows == []
        purchased = session.execute(text("SELECT purchased_quantity FROM batches")).scalar_one()
        assert purchased == 5


def product_with_lines(session_factory: sessionmaker[Session], count: int) -> None:
    with session_factory() as session:
        product = model.Product("BUSY")
        product.add_batch(model.Batch("busy-1", "BUSY", count + 10))
        for i in range(count):
            product.allocate(model.OrderLine(f"o{i}", "BUSY", 1))
        SqlAlchemyRepository(session).add(product)
        session.commit()


def lines_in_memory(session: Session) -> list[model.OrderLine]:
    return [obj for obj in session.identity_map.values() if isinstance(obj, model.OrderLine)]


def test_the_allocate_path_loads_only_the_orders_own_lines(
    session_factory: sessionmaker[Session],
) -> None:
    product_with_lines(session_factory, 300)

    with session_factory() as session:
        product = SqlAlchemyRepository(session).get("BUSY", orderid="new-order")
        assert product is not None
        assert lines_in_memory(session) == []  # none of the 300 other lines was read
        assert product.allocate(model.OrderLine("new-order", "BUSY", 4)) == "busy-1"
        session.flush()
        assert lines_in_memory(session) == [model.OrderLine("new-order", "BUSY", 4)]
        session.commit()

    with session_factory() as session:
        product = SqlAlchemyRepository(session).get("BUSY", orderid="o7")
        assert product is not None
        assert lines_in_memory(session) == [model.OrderLine("o7", "BUSY", 1)]
        [batch] = product.batches
        assert (batch.allocated_quantity, batch.available_quantity) == (304, 6)
        version = product.version_number
        assert product.allocate(model.OrderLine("o7", "BUSY", 1)) == "busy-1"  # a repeat
        assert product.version_number == version


def test_shrinking_a_batch_reads_its_lines_and_keeps_the_count(
    session_factory: sessionmaker[Session],
) -> None:
    product_with_lines(session_factory, 20)
    with session_factory() as session:
        product = SqlAlchemyRepository(session).get_by_batchref("busy-1")
        assert product is not None
        product.change_batch_quantity("busy-1", 15)
        session.commit()

    with session_factory() as session:
        counted, summed = session.execute(
            text(
                "SELECT b.allocated_quantity, (SELECT sum(qty) FROM allocations a"
                " WHERE a.batch_id = b.id) FROM batches b"
            )
        ).one()
        assert counted == summed == 15
