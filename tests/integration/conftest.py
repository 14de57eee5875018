"""Real databases for the adapters: a throwaway PostgreSQL for the session, SQLite per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from allocation.adapters import database, orm


@pytest.fixture
def mappers() -> Iterator[None]:
    orm.start_mappers()
    yield
    orm.clear_mappers()


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = database.make_engine(postgres_url)
    orm.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_session_factory(
    postgres_engine: Engine, mappers: None
) -> Iterator[sessionmaker[Session]]:
    yield database.session_factory(postgres_engine)
    tables = ", ".join(table.name for table in orm.metadata.sorted_tables)
    with postgres_engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sqlite_session_factory(tmp_path: Path, mappers: None) -> Iterator[sessionmaker[Session]]:
    engine = database.make_engine(f"sqlite:///{tmp_path / 'allocation.sqlite3'}")
    orm.metadata.create_all(engine)
    yield database.session_factory(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def session_factory(request: pytest.FixtureRequest) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = request.getfixturevalue(f"{request.param}_session_factory")
    return factory
