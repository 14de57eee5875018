"""The SQLAlchemy Unit of Work: atomicity and optimistic concurrency on real databases."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext

import pytest
from sqlalchemy import Engine, event, text

from allocation import bootstrap
from allocation.adapters.persistence import product_statements, repository
from allocation.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWork
from allocation.config import Settings
from allocation.domain import commands, model
from allocation.domain.exceptions import ConcurrencyConflict, OutOfStockError
from allocation.domain.model import Allocation
from tests.fakes import FakeNotifications
from tests.integration.conftest import scalar
from tests.waiting import wait_until


def insert_product(engine: Engine, sku: str, *batches: tuple[str, int]) -> None:
    with SqlAlchemyUnitOfWork(engine) as uow:
        product = model.Product(sku)
        for ref, qty in batches:
            product.add_batch(model.Batch(ref, sku, qty))
        uow.products.add(product)
        uow.commit()


def test_commit_makes_the_allocation_durable(engine: Engine) -> None:
    insert_product(engine, "LAMP", ("b1", 10))
    with SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.for_allocation("LAMP", "o1")
        assert product is not None
        product.allocate(model.OrderLine("o1", "LAMP", 3))
        uow.commit()
        assert list(uow.collect_new_events())  # released only after the commit
    assert scalar(engine, "SELECT count(*) FROM allocations") == 1
    assert scalar(engine, "SELECT version_number FROM products") == 2


def test_leaving_without_commit_rolls_back(engine: Engine) -> None:
    insert_product(engine, "LAMP", ("b1", 10))
    with SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.for_allocation("LAMP", "o1")
        assert product is not None
        product.allocate(model.OrderLine("o1", "LAMP", 3))
    assert list(uow.collect_new_events()) == []
    assert scalar(engine, "SELECT count(*) FROM allocations") == 0


def test_an_error_rolls_back(engine: Engine) -> None:
    insert_product(engine, "LAMP", ("b1", 10))
    with pytest.raises(RuntimeError), SqlAlchemyUnitOfWork(engine) as uow:
        product = uow.products.for_allocation("LAMP", "o1")
        assert product is not None
        product.allocate(model.OrderLine("o1", "LAMP", 3))
        raise RuntimeError("boom")
    assert scalar(engine, "SELECT count(*) FROM allocations") == 0


def test_a_change_on_postgres_is_two_round_trips_carrying_begin_and_commit(
    postgres_engine: Engine,
) -> None:
    """The read (BEGIN, the lock, the rows) and the write (the rows, COMMIT)."""
    insert_product(postgres_engine, "LAMP", ("b1", 10))
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        sent.append(statement)

    event.listen(postgres_engine, "after_cursor_execute", record)
    try:
        with SqlAlchemyUnitOfWork(postgres_engine) as uow:
            product = uow.products.for_allocation("LAMP", "o1")
            assert product is not None
            product.allocate(model.OrderLine("o1", "LAMP", 3))
            uow.commit()
    finally:
        event.remove(postgres_engine, "after_cursor_execute", record)

    assert len(sent) == 2, sent
    assert sent[0].startswith("BEGIN; ") and "lock_product_by_sku" in sent[0]
    assert sent[1].endswith("; COMMIT") and "bump_product_version" in sent[1]
    assert scalar(postgres_engine, "SELECT count(*) FROM allocations") == 1


def backend_state(engine: Engine, pid: int) -> str:
    """What pg_stat_activity says backend ``pid`` is doing, asked outside a transaction."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        query = text("SELECT state FROM pg_stat_activity WHERE pid = :pid")
        return str(connection.execute(query, {"pid": pid}).scalar_one())


@pytest.mark.parametrize("leave", ["error", "no commit", "commit"])
def test_a_unit_of_work_hands_its_connection_back_outside_any_transaction(
    postgres_engine: Engine, leave: str
) -> None:
    """However it ends, the BEGIN it sent is closed: no lock and no snapshot is left
    to whoever takes the pooled connection next."""
    insert_product(postgres_engine, "LAMP", ("b1", 10))
    failing = pytest.raises(RuntimeError) if leave == "error" else nullcontext()
    with failing, SqlAlchemyUnitOfWork(postgres_engine) as uow:
        product = uow.products.for_allocation("LAMP", "o1")
        assert product is not None and uow.connection is not None
        pid = uow.connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert backend_state(postgres_engine, pid) == "idle in transaction"
        product.allocate(model.OrderLine("o1", "LAMP", 3))
        if leave == "error":
            raise RuntimeError("boom")
        if leave == "commit":
            uow.commit()
    assert backend_state(postgres_engine, pid) == "idle"
    assert scalar(postgres_engine, "SELECT count(*) FROM allocations") == (leave == "commit")


def test_a_first_statement_run_once_per_row_runs_inside_the_transaction_too(
    postgres_engine: Engine,
) -> None:
    """An executemany cannot carry BEGIN in front of it (it would run once per row):
    BEGIN goes alone first, and leaving without commit undoes every row."""
    insert_product(postgres_engine, "LAMP", ("b1", 10))
    bump = text("UPDATE products SET version_number = :version WHERE sku = 'LAMP'")
    with SqlAlchemyUnitOfWork(postgres_engine) as uow:
        assert uow.connection is not None
        uow.connection.execute(bump, [{"version": 7}, {"version": 8}])
    assert scalar(postgres_engine, "SELECT version_number FROM products") == 1


def run_together(*actions: Callable[[], object]) -> list[object]:
    results: list[object] = [None] * len(actions)

    def run(index: int, action: Callable[[], object]) -> None:
        try:
            results[index] = action()
        except Exception as error:  # collected and asserted on by the caller
            results[index] = error

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


class UnlockedRepository(repository.SqlAlchemyRepository):
    """Reads a product without taking its row lock, as a careless writer might."""

    # The rows statement in the lock's place: read twice, locked never.
    _UNLOCKED = repository._Load(
        product_statements.PRODUCT_FOR_ALLOCATION,
        product_statements.PRODUCT_FOR_ALLOCATION,
        lines=True,
        waiting=True,
    )

    def _for_allocation(self, sku: str, orderid: str) -> model.Product | None:
        return self._load(self._UNLOCKED, {"sku": sku, "orderid": orderid})


def test_two_transactions_on_one_version_cannot_both_commit(
    postgres_engine: Engine,
) -> None:
    """The guarantee itself: even two writers that read the product without the
    repository's row lock cannot both commit a change of the same version."""
    factory = postgres_engine
    insert_product(factory, "HOT", ("b1", 10))
    both_loaded = threading.Barrier(2, timeout=10)

    def allocate(orderid: str) -> str:
        with SqlAlchemyUnitOfWork(factory) as uow:
            assert uow.session is not None
            uow.products = uow._repository = UnlockedRepository(uow.session)
            product = uow.products.for_allocation("HOT", orderid)
            assert product is not None
            product.allocate(model.OrderLine(orderid, "HOT", 6))
            both_loaded.wait()
            uow.commit()
        return orderid

    results = run_together(lambda: allocate("o1"), lambda: allocate("o2"))

    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    winners = [r for r in results if isinstance(r, str)]
    assert (len(winners), len(conflicts)) == (1, 1), results
    assert scalar(factory, "SELECT version_number FROM products") == 2
    assert scalar(factory, "SELECT count(*) FROM allocations") == 1
    assert scalar(factory, "SELECT orderid FROM allocations") == winners[0]


def waiting_on_locks_of(engine: Engine, holder: int) -> list[int]:
    """The backends waiting on a lock that backend ``holder`` holds. Asked on a
    connection of its own in autocommit: inside a transaction pg_stat_activity
    would not change."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        return list(
            connection.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND :holder = ANY(pg_blocking_pids(pid))"
                ),
                {"holder": holder},
            ).scalars()
        )


def test_the_repository_makes_a_second_writer_wait_for_the_first(
    postgres_engine: Engine,
) -> None:
    factory = postgres_engine
    insert_product(factory, "HOT", ("b1", 10))
    first_loaded = threading.Event()

    def first() -> object:
        with SqlAlchemyUnitOfWork(factory) as uow:
            product = uow.products.for_allocation("HOT", "o1")
            assert product is not None and uow.connection is not None
            backend = uow.connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            first_loaded.set()
            # Seen, not assumed: the second writer's load waits on the row lock we hold.
            wait_until(
                "the second writer waiting on the first's row lock",
                lambda: waiting_on_locks_of(factory, backend) or None,
            )
            result = product.allocate(model.OrderLine("o1", "HOT", 6))
            uow.commit()
        return result

    def second() -> object:
        assert first_loaded.wait(10), "the first writer never loaded the product"
        with SqlAlchemyUnitOfWork(factory) as uow:
            product = uow.products.for_allocation("HOT", "o2")  # blocks until first commits
            assert product is not None
            result = product.allocate(model.OrderLine("o2", "HOT", 6))
            uow.commit()
        return result

    # No conflict: o2 saw o1's line.
    assert run_together(first, second) == [Allocation("b1"), Allocation(None)]
    assert scalar(factory, "SELECT version_number FROM products") == 2


def test_concurrent_allocations_through_the_bus_retry_and_never_oversell(
    postgres_engine: Engine,
) -> None:
    factory = postgres_engine
    insert_product(factory, "HOT", ("b1", 5))
    bus = bootstrap.bootstrap(
        Settings(commit_attempts=30),
        uow_factory=lambda: SqlAlchemyUnitOfWork(factory),
        notifications=FakeNotifications(),
    )
    start = threading.Barrier(8, timeout=10)

    def allocate(orderid: str) -> object:
        start.wait()
        return bus.handle(commands.Allocate(orderid, "HOT", 1))

    results = run_together(*[lambda i=i: allocate(f"o{i}") for i in range(8)])

    assert [type(r) for r in results].count(Allocation) == 5, results
    assert all(isinstance(r, (Allocation, OutOfStockError)) for r in results), results
    assert scalar(factory, "SELECT count(*) FROM allocations") == 5
    assert scalar(factory, "SELECT version_number FROM products") == 1 + 5
    assert scalar(factory, "SELECT count(*) FROM allocations_view") == 5


def test_the_same_line_sent_twice_at_once_is_allocated_once(
    postgres_engine: Engine,
) -> None:
    factory = postgres_engine
    insert_product(factory, "HOT", ("b1", 10))
    bus = bootstrap.bootstrap(
        Settings(),
        uow_factory=lambda: SqlAlchemyUnitOfWork(factory),
        notifications=FakeNotifications(),
    )
    start = threading.Barrier(2, timeout=10)

    def allocate() -> object:
        start.wait()
        return bus.handle(commands.Allocate("o1", "HOT", 4))

    assert run_together(allocate, allocate) == [Allocation("b1"), Allocation("b1")]
    assert scalar(factory, "SELECT sum(qty) FROM allocations") == 4
    assert scalar(factory, "SELECT count(*) FROM outbox WHERE channel = 'line_allocated'") == 1
