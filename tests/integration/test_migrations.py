"""Alembic owns the schema: the migrations make exactly the tables of orm.metadata.

Every PostgreSQL test gets a database of its own, created on the session's
server and dropped afterwards, so migrations always start from a known state.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from allocation import bootstrap
from allocation.adapters.outbox_wakeup import PostgresWakeup
from allocation.adapters.sql import database, orm
from allocation.config import Settings
from allocation.domain import commands
from allocation.entrypoints.api.app import create_app
from allocation.service_layer import stock


def schema_differences(engine: Engine) -> list[object]:
    """What autogenerate would put into a new revision: empty when the database
    matches the whole of orm.metadata (types and server defaults included)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences: list[object] = compare_metadata(context, orm.metadata)
    return differences


def assert_at_head(engine: Engine) -> None:
    assert database.current_revision(engine) == database.head_revision()
    assert schema_differences(engine) == []


@pytest.fixture(scope="module")
def admin_engine(postgres_url: str) -> Iterator[Engine]:
    """Connected to the session's database, only to create and drop others."""
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def fresh_postgres_url(admin_engine: Engine) -> Iterator[str]:
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    with admin_engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(admin_engine.url).set(database=name).render_as_string(hide_password=False)
    with admin_engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def engine_for() -> Iterator[Callable[[str], Engine]]:
    """Engines made the way the service makes them, disposed after the test."""
    engines: list[Engine] = []

    def make(url: str) -> Engine:
        engines.append(database.make_engine(url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def postgres_engine(fresh_postgres_url: str, engine_for: Callable[[str], Engine]) -> Engine:
    return engine_for(fresh_postgres_url)


def test_upgrading_an_empty_postgres_database_makes_the_orm_schema(postgres_engine: Engine) -> None:
    assert database.current_revision(postgres_engine) is None

    database.upgrade_to_head(postgres_engine)

    assert_at_head(postgres_engine)


def test_upgrading_an_empty_sqlite_database_makes_the_orm_schema(
    tmp_path: Path, engine_for: Callable[[str], Engine]
) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'allocation.sqlite3'}")

    database.upgrade_to_head(engine)

    assert_at_head(engine)


def test_downgrade_to_base_then_upgrade_to_head(postgres_engine: Engine) -> None:
    database.upgrade_to_head(postgres_engine)

    with postgres_engine.begin() as connection:
        command.downgrade(database.alembic_config(connection), "base")

    assert database.current_revision(postgres_engine) is None
    assert inspect(postgres_engine).get_table_names() == ["alembic_version"]

    database.upgrade_to_head(postgres_engine)

    assert_at_head(postgres_engine)


def test_migrating_twice_changes_nothing(fresh_postgres_url: str, postgres_engine: Engine) -> None:
    settings = Settings(database_url=fresh_postgres_url)
    bootstrap.migrate(settings)
    with postgres_engine.begin() as connection:
        connection.execute(text("INSERT INTO products (sku) VALUES ('LAMP')"))

    bootstrap.migrate(settings)

    assert_at_head(postgres_engine)
    with postgres_engine.connect() as connection:
        assert connection.execute(text("SELECT sku FROM products")).scalars().all() == ["LAMP"]
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_two_migrations_started_together_both_succeed(
    fresh_postgres_url: str, postgres_engine: Engine
) -> None:
    settings = Settings(database_url=fresh_postgres_url)
    start = threading.Barrier(2)

    def migrate() -> None:
        start.wait(timeout=10)
        bootstrap.migrate(settings)

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(migrate) for _ in range(2)]
        for run in runs:
            run.result(timeout=60)  # re-raises what the migration raised

    assert_at_head(postgres_engine)


def test_a_database_made_by_create_all_is_stamped_then_upgraded(postgres_engine: Engine) -> None:
    # The schema create_all made then is revision 0001's, without Alembic's bookkeeping.
    with postgres_engine.begin() as connection:
        command.upgrade(database.alembic_config(connection), database.INITIAL_REVISION)
        connection.execute(text("DROP TABLE alembic_version"))
    with postgres_engine.begin() as connection:
        connection.execute(text("INSERT INTO products (sku, version_number) VALUES ('LAMP', 3)"))
    assert database.current_revision(postgres_engine) is None

    database.upgrade_to_head(postgres_engine)

    assert_at_head(postgres_engine)
    with postgres_engine.connect() as connection:
        row = connection.execute(text("SELECT sku, version_number FROM products")).one()
    assert tuple(row) == ("LAMP", 3)


def test_a_committed_outbox_row_wakes_the_relay(postgres_engine: Engine) -> None:
    database.upgrade_to_head(postgres_engine)
    wakeup = PostgresWakeup(postgres_engine, threading.Event())
    try:
        wakeup.wait(0.01)  # connects and LISTENs
        with postgres_engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO outbox (message_id, channel, sku, payload, occurred_at)"
                    " VALUES ('m1', 'line_allocated', 'LAMP', '{}', now())"
                )
            )
        started = time.monotonic()
        wakeup.wait(5)
        assert time.monotonic() - started < 1, "no notification: the relay would only poll"
    finally:
        wakeup.close()


def _fill_revision_0005(engine: Engine) -> None:
    """A shop's data as revision 0005 held it: two products, lines, views, outbox."""
    with engine.begin() as connection:
        for sql in (
            "INSERT INTO products (sku, version_number) VALUES ('LAMP', 4), ('VASE', 1)",
            "INSERT INTO batches (reference, sku, purchased_quantity, eta, allocated_quantity)"
            " VALUES ('ship-late', 'LAMP', 10, '2030-02-01', 0),"
            " ('warehouse', 'LAMP', 5, NULL, 5), ('ship-soon', 'LAMP', 8, '2030-01-01', 3),"
            " ('vase-1', 'VASE', 2, NULL, 0)",
            "INSERT INTO allocations (orderid, sku, qty, batch_id) VALUES"
            " ('o1', 'LAMP', 5, (SELECT id FROM batches WHERE reference = 'warehouse')),"
            " ('o2', 'LAMP', 3, (SELECT id FROM batches WHERE reference = 'ship-soon'))",
            "INSERT INTO allocations_view (orderid, sku, batchref) VALUES"
            " ('o1', 'LAMP', 'warehouse'), ('o2', 'LAMP', 'ship-soon')",
            "INSERT INTO outbox (message_id, channel, sku, payload, occurred_at)"
            " VALUES ('m1', 'line_allocated', 'LAMP', '{}', CURRENT_TIMESTAMP)",
        ):
            connection.execute(text(sql))


_TABLES_OF_0005 = ("products", "batches", "allocations", "allocations_view", "outbox")


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_an_existing_database_upgrades_in_place_without_losing_a_row(
    dialect: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
) -> None:
    url = _database_url(dialect, request, tmp_path)
    engine = engine_for(url)
    _at_revision_0005_with_rows(engine)
    before = {table: _table_rows(engine, table) for table in _TABLES_OF_0005}

    database.upgrade_to_head(engine)

    _assert_at_head_with_the_rows(engine, before)
    with engine.connect() as connection:
        accepted = connection.execute(text("SELECT accepted_at FROM allocations")).scalars().all()
        view = connection.execute(
            text("SELECT sku, version, backordered, slots FROM availability_view ORDER BY sku")
        ).all()
    assert len(accepted) == 2 and None not in accepted
    assert [
        (sku, version, backordered, json.loads(slots)) for sku, version, backordered, slots in view
    ] == [
        ("LAMP", 4, 0, [[None, 0], ["2030-01-01", 5], ["2030-02-01", 10]]),
        ("VASE", 1, 0, [[None, 2]]),
    ]


_TABLES_OF_0006 = (*_TABLES_OF_0005, "backorders", "availability_view")


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
def test_the_stock_of_a_0006_database_opens_its_ledger(
    dialect: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine_for: Callable[[str], Engine],
) -> None:
    url = _database_url(dialect, request, tmp_path)
    engine = engine_for(url)
    _at_revision_0005_with_rows(engine)
    with engine.begin() as connection:
        command.upgrade(database.alembic_config(connection), "0006")
        connection.execute(
            text(
                "INSERT INTO backorders (orderid, sku, qty, since)"
                " VALUES ('o3', 'VASE', 4, CURRENT_TIMESTAMP)"
            )
        )
    before = {table: _table_rows(engine, table) for table in _TABLES_OF_0006}

    database.upgrade_to_head(engine)

    _assert_at_head_with_the_rows(engine, before)
    with engine.connect() as connection:
        opening = connection.execute(
            text(
                "SELECT sku, seq, kind, qty, batchref, version, reason FROM stock_movements"
                " ORDER BY sku, seq"
            )
        ).all()
        numbered = connection.execute(
            text("SELECT sku, movement_seq FROM products ORDER BY sku")
        ).all()
    assert [tuple(row) for row in opening] == [
        ("LAMP", 1, "batch_added", 10, "ship-late", 4, "opening"),
        ("LAMP", 2, "batch_added", 5, "warehouse", 4, "opening"),
        ("LAMP", 3, "allocated", -5, "warehouse", 4, "opening"),
        ("LAMP", 4, "batch_added", 8, "ship-soon", 4, "opening"),
        ("LAMP", 5, "allocated", -3, "ship-soon", 4, "opening"),
        ("VASE", 1, "batch_added", 2, "vase-1", 1, "opening"),
    ]
    assert [tuple(row) for row in numbered] == [("LAMP", 5), ("VASE", 1)]
    uow_factory = bootstrap.make_uow_factory(Settings(DATABASE_URL=url))
    assert stock.check_movements(uow_factory).disagreements == []
    bus = bootstrap.bootstrap(Settings(DATABASE_URL=url), uow_factory=uow_factory)
    bus.handle(commands.PlaceHold("h1", "LAMP", 2, 60))
    bus.handle(commands.Allocate("o4", "VASE", 1))
    bus.handle(commands.CreateBatch("vase-2", "VASE", 5))  # o3 (4), waiting, is served
    assert stock.check_movements(uow_factory).disagreements == []


def _database_url(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of the dialect's: PostgreSQL's fixture, or a SQLite file."""
    if dialect == "postgres":
        return str(request.getfixturevalue("fresh_postgres_url"))
    return f"sqlite:///{tmp_path / 'allocation.sqlite3'}"


def _at_revision_0005_with_rows(engine: Engine) -> None:
    with engine.begin() as connection:
        command.upgrade(database.alembic_config(connection), "0005")
    _fill_revision_0005(engine)


def _assert_at_head_with_the_rows(
    engine: Engine, before: dict[str, list[tuple[object, ...]]]
) -> None:
    """At head, and every table still holds its rows (new columns aside)."""
    assert_at_head(engine)
    for table, rows in before.items():
        after = _table_rows(engine, table)
        assert sorted((row[: len(rows[0])] for row in after), key=repr) == rows, table


def _table_rows(engine: Engine, table: str) -> list[tuple[object, ...]]:
    """The table's rows (new columns come after the old ones), in a fixed order."""
    with engine.connect() as connection:
        found = connection.execute(text(f"SELECT * FROM {table}")).all()
    return sorted((tuple(row) for row in found), key=repr)


# A database behind the code is reported as such, with what to do, not as an outage.


def test_an_empty_or_old_schema_is_reported_with_the_cure(
    fresh_postgres_url: str, postgres_engine: Engine
) -> None:
    settings = Settings(database_url=fresh_postgres_url)
    empty = bootstrap.schema_problem(settings)
    assert empty is not None
    shown = make_url(fresh_postgres_url).render_as_string(hide_password=True)
    assert empty.explained == (
        f"the database schema is not migrated (empty, at {shown}): run `allocation migrate`"
    )
    with postgres_engine.begin() as connection:
        command.upgrade(database.alembic_config(connection), "0005")
    behind = bootstrap.schema_problem(settings)
    assert behind is not None
    assert f"at revision 0005, this code needs {database.head_revision()}" in behind.explained
    bootstrap.migrate(settings)
    assert bootstrap.schema_problem(settings) is None


def test_a_missing_sqlite_file_is_reported_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.sqlite3"
    problem = bootstrap.schema_problem(Settings(database_url=f"sqlite:///{path}"))
    assert problem is not None
    assert f"no database file {path}" in problem.explained
    assert not path.exists()


def test_the_api_on_an_unmigrated_database_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()  # the file exists, with no tables
    client = create_app(Settings(database_url=f"sqlite:///{path}")).test_client()
    try:
        read = client.get("/allocations/o1")
        assert (read.status_code, read.get_json()) == (
            503,
            {"message": "The database schema is not migrated: run `allocation migrate`"},
        )
        write = client.post("/add_batch", json={"ref": "b1", "sku": "LAMP", "qty": 1})
        assert write.status_code == 503
        assert "not migrated" in write.get_json()["message"]
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["database"] == "ok"
        assert ready.get_json()["checks"]["migrations"].startswith(
            "the database schema is not migrated (empty, at sqlite:///"
        )
    finally:
        orm.clear_mappers()
