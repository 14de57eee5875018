"""Real databases for the adapters: a throwaway PostgreSQL for the session, SQLite per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from allocation import bootstrap
from allocation.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWork
from allocation.adapters.sql import database, orm
from allocation.config import Settings
from allocation.service_layer.unit_of_work import AbstractUnitOfWork
from tests.fakes import FakeNotifications, FakeStore, FakeUnitOfWork

UnitOfWorkFactory = Callable[[], AbstractUnitOfWork]


@pytest.fixture
def mappers() -> Iterator[None]:
    orm.start_mappers()
    yield
    orm.clear_mappers()


@pytest.fixture(scope="session")
def postgres_session_engine(postgres_url: str) -> Iterator[Engine]:
    # As the service makes it for its Units of Work, which send their own BEGIN and COMMIT.
    engine = database.make_engine(postgres_url, own_transactions=True)
    database.upgrade_to_head(engine)  # the schema as shipped: its functions and triggers too
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(postgres_session_engine: Engine, mappers: None) -> Iterator[Engine]:
    yield postgres_session_engine
    postgres_session_engine.dispose()  # a test may have had the server drop its connections
    tables = ", ".join(table.name for table in orm.metadata.sorted_tables)
    with postgres_session_engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sqlite_engine(tmp_path: Path, mappers: None) -> Iterator[Engine]:
    engine = database.make_engine(f"sqlite:///{tmp_path / 'allocation.sqlite3'}")
    orm.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    chosen: Engine = request.getfixturevalue(f"{request.param}_engine")
    return chosen


def rows(engine: Engine, sql: str, **params: object) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql), params)]


def scalar(engine: Engine, sql: str, **params: object) -> object:
    [(value,)] = rows(engine, sql, **params)
    return value


@pytest.fixture(params=["fake", "sqlite", "postgres"])
def uow_factory(request: pytest.FixtureRequest) -> UnitOfWorkFactory:
    """Units of Work on the fake, SQLite and PostgreSQL in turn: for contract tests."""
    if request.param == "fake":
        store = FakeStore()
        return lambda: FakeUnitOfWork(store)
    engine: Engine = request.getfixturevalue(f"{request.param}_engine")
    return lambda: SqlAlchemyUnitOfWork(engine)


def bus_for(engine: Engine) -> bootstrap.MessageBus:
    """The bus on a real database, with fake notifications."""
    return bootstrap.bootstrap(
        Settings(),
        uow_factory=lambda: SqlAlchemyUnitOfWork(engine),
        notifications=FakeNotifications(),
    )
