"""Alembic environment, run by every Alembic command (see adapters.database).

There is no alembic.ini: adapters.database builds the Config and passes an open
connection in ``config.attributes["connection"]``; the caller owns that
connection and its transaction (and, on PostgreSQL, the advisory lock taken
on it). Without a connection, ``sqlalchemy.url`` is used: online through a
throwaway engine, or offline (``--sql``) to print the SQL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from allocation.adapters.sql.orm import metadata

config = context.config
target_metadata = metadata


def run_migrations_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need the sqlalchemy.url option")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: "batch" mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # What autogenerate compares besides tables, columns, indexes and keys.
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            'pass a connection in config.attributes["connection"] or set sqlalchemy.url'
        )
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            run_migrations_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
