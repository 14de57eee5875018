"""Engines and schema: how the service connects to its database.

Alembic owns the schema. The migration environment ships inside this package
(``adapters/migrations``) and is driven through a Config built here, so no
alembic.ini is needed at run time.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from allocation.adapters import orm

MIGRATIONS_DIRECTORY = Path(__file__).resolve().with_name("migrations")

# The revision that creates the tables metadata.create_all used to make: a
# database made that way (before Alembic) is stamped with it, then upgraded.
INITIAL_REVISION = "0001"

# Key of the PostgreSQL advisory lock that serialises concurrent migrations
# (any fixed 64-bit number, the same for every instance of the service).
MIGRATION_LOCK_KEY = 4_172_937_220_190_581_001


def make_engine(database_url: str, autocommit: bool = False) -> Engine:
    """An engine and its pool. Writes rely on PostgreSQL's default, READ COMMITTED
    (the version check and the row lock make it safe); ``autocommit`` is for reads,
    which then need no BEGIN or ROLLBACK round trip."""
    url = make_url(database_url)
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url,
        # Writes check a pooled connection before use, so none is sent into a
        # connection the server dropped (say, on restart); reads skip the round trip
        # and are retried instead (views.allocations), which is safe for a read.
        pool_pre_ping=not autocommit,
        connect_args={"connect_timeout": 3},
        pool_size=10,
        max_overflow=10,
        **options,
    )


def is_postgresql(session: Session) -> bool:
    """Whether the session's database is PostgreSQL (some statements exist only there)."""
    return session.get_bind().dialect.name == "postgresql"


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions flush only on commit: a lazy load in the middle of a change must not
    write half of it (a line moving between batches would be deleted, not moved).
    Nothing is read after commit, so nothing needs expiring then."""
    return sessionmaker(bind=engine, autoflush=False, expire_on_commit=False)


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic Config for the packaged migrations, run on ``connection``
    (or, without one, on a connection of its own to ``url``)."""
    config = Config()
    # Config values go through configparser interpolation: a literal % is %%.
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Migrates the database to the newest revision; running it again changes nothing.

    Everything happens in one transaction (PostgreSQL has transactional DDL):
    a failed migration leaves the schema as it was. On PostgreSQL the
    transaction first takes an advisory lock, so instances starting together
    migrate one after the other and the later ones find the schema at head.
    """
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        config = alembic_config(connection)
        tables = inspect(connection)
        if tables.has_table(orm.products.name) and not tables.has_table("alembic_version"):
            # Made by metadata.create_all before Alembic owned the schema.
            command.stamp(config, INITIAL_REVISION)
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; None when Alembic has never migrated it."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@functools.cache
def head_revision() -> str:
    """The newest revision shipped with this code (the files never change while it runs)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS_DIRECTORY}")
    return head
