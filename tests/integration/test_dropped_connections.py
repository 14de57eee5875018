"""Pooled connections are not checked before use: one the server dropped is replaced at once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from allocation.adapters.read_models.queries import SqlReadModel
from allocation.adapters.sql import database
from allocation.domain import commands
from allocation.domain.exceptions import DatabaseUnavailable
from tests.integration.conftest import bus_for


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
