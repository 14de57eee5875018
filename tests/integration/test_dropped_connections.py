"""Pooled connections are not checked before use: one the server dropped is replaced at
once. A connection lost during COMMIT is another matter: the outcome is unknown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

from allocation.adapters import metrics
from allocation.adapters.persistence.unit_of_work import SqlAlchemyUnitOfWork
from allocation.adapters.read_models.queries import SqlReadModel
from allocation.adapters.sql import database
from allocation.domain import commands
from allocation.domain.exceptions import (
    CommitOutcomeUnknown,
    ConnectionDropped,
    DatabaseUnavailable,
    DuplicateBatch,
)
from devtools.servers import PostgresServer
from tests.integration.conftest import bus_for, rows
from tests.waiting import wait_until


def drop_the_other_connections(engine: Engine) -> int:
    """What a server restart does to a pool: its connections are closed under it.
    Done from a connection of its own, outside the pool."""
    outsider = create_engine(engine.url, poolclass=NullPool)
    try:
        with outsider.connect() as connection:
            dropped = connection.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
    finally:
        outsider.dispose()
    return int(dropped)


def test_a_read_on_a_dropped_connection_is_retried(postgres_engine: Engine) -> None:
    reads = database.make_engine(postgres_engine.url.render_as_string(False), autocommit=True)
    try:
        read_model = SqlReadModel(reads)
        assert read_model.allocations_for_order("o1") == []  # a pooled connection now
        assert drop_the_other_connections(postgres_engine) >= 1
        assert read_model.allocations_for_order("o1") == []
    finally:
        reads.dispose()


def test_a_command_on_a_dropped_connection_runs_again(postgres_engine: Engine) -> None:
    bus = bus_for(postgres_engine)
    bus.handle(commands.CreateBatch("b1", "LAMP", 10))  # leaves a pooled connection
    assert drop_the_other_connections(postgres_engine) >= 1
    assert bus.handle(commands.Allocate("o1", "LAMP", 1)).batchref == "b1"


def test_a_statement_past_the_timeout_is_reported_as_unavailable(
    postgres_engine: Engine,
) -> None:
    """A request never waits on the database for ever: a held row lock, say."""
    patient = database.make_engine(
        postgres_engine.url.render_as_string(False), statement_timeout_ms=300
    )
    bus = bus_for(patient)
    try:
        bus.handle(commands.CreateBatch("b1", "LAMP", 10))
        with postgres_engine.begin() as holder:
            holder.execute(text("SELECT 1 FROM products WHERE sku = 'LAMP' FOR UPDATE"))
            started = time.monotonic()
            with pytest.raises(DatabaseUnavailable):
                bus.handle(commands.Allocate("o1", "LAMP", 1))
            assert time.monotonic() - started < 5
    finally:
        patient.dispose()


def test_a_connection_lost_after_the_work_before_the_rollback_is_a_dropped_connection(
    postgres_engine: Engine,
) -> None:
    """Nothing was committed, so the command may run again; never a driver error."""
    uow = SqlAlchemyUnitOfWork(postgres_engine)
    with pytest.raises(ConnectionDropped), uow:
        uow.products.get("LAMP")
        assert drop_the_other_connections(postgres_engine) >= 1


def test_reads_after_every_pooled_connection_was_dropped_fail_none(
    postgres_engine: Engine,
) -> None:
    """After a restart or a failover every pooled connection is dead: the first one
    found dead replaces the pool, so the retry gets a fresh connection, not the next
    dead one."""
    reads = database.make_engine(postgres_engine.url.render_as_string(False), autocommit=True)
    try:
        held = [reads.raw_connection() for _ in range(3)]  # three pooled connections
        for connection in held:
            connection.close()
        assert drop_the_other_connections(postgres_engine) >= 3
        read_model = SqlReadModel(reads)
        assert [read_model.allocations_for_order("o1") for _ in range(3)] == [[], [], []]
    finally:
        reads.dispose()


def test_a_connection_to_a_server_turned_read_only_is_replaced_and_the_command_run_again(
    postgres_engine: Engine,
) -> None:
    """A primary demoted under a pooled connection answers writes with "read-only
    transaction": that connection is as good as lost, and the pool is replaced."""
    bus = bus_for(postgres_engine)
    bus.handle(commands.CreateBatch("b1", "LAMP", 10))
    postgres_engine.dispose()
    with postgres_engine.connect() as connection:  # now the one pooled connection
        connection.execute(text("SET SESSION default_transaction_read_only = on"))
        connection.commit()
    reconnects = metrics.DATABASE_RECONNECTS._value.get()
    assert bus.handle(commands.Allocate("o1", "LAMP", 1)).batchref == "b1"
    assert metrics.DATABASE_RECONNECTS._value.get() == reconnects + 1


@pytest.fixture
def waiting_for_a_standby(mappers: None) -> Iterator[tuple[Engine, Engine]]:
    """A server whose commits wait for a synchronous standby that never comes, and
    two engines: one whose commits wait (synchronous_commit on), one whose do not."""
    settings = {"synchronous_standby_names": "nobody"}
    with PostgresServer(settings=settings) as server:
        url = server.create_database("sync_commit")
        prompt = database.make_engine(url)  # the server's synchronous_commit is off
        database.upgrade_to_head(prompt)
        waiting = database.make_engine(url)
        event.listen(waiting, "connect", _synchronous_commit)
        yield waiting, prompt
        waiting.dispose()
        prompt.dispose()


def _synchronous_commit(dbapi_connection: Any, _record: object) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = on")
    dbapi_connection.commit()  # a setting of the session, not of a transaction rolled back


def test_a_commit_whose_connection_died_is_not_run_again_and_a_repeat_tells_the_outcome(
    waiting_for_a_standby: tuple[Engine, Engine],
) -> None:
    """The connection dies while COMMIT waits for the standby: the change is made
    (on the primary) but the caller cannot know. The bus does not run it again (a
    second CreateBatch would say "exists" of its own batch); the caller is told the
    outcome is unknown, and a repeat tells it: here, the batch exists."""
    waiting, prompt = waiting_for_a_standby
    outcome: list[BaseException] = []

    def create() -> None:
        try:
            bus_for(waiting).handle(commands.CreateBatch("b1", "LAMP", 10))
        except BaseException as error:  # handed to the test's thread
            outcome.append(error)

    creating = threading.Thread(target=create)
    creating.start()
    waiting_pids = "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
    [(pid,)] = wait_until(
        "a COMMIT waiting for the standby", lambda: rows(prompt, waiting_pids) or None
    )
    rows(prompt, "SELECT pg_terminate_backend(:pid)", pid=pid)
    creating.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], CommitOutcomeUnknown), outcome
    with pytest.raises(DuplicateBatch):
        bus_for(prompt).handle(commands.CreateBatch("b1", "LAMP", 10))
