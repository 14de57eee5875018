"""Engines and schema: how the service connects to its database.

Alembic owns the schema. The migration environment ships inside this package
(``adapters/sql/migrations``) and is driven through a Config built here, so no
alembic.ini is needed at run time.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext, make_url

from allocation.adapters import failover, metrics
from allocation.adapters.sql import orm
from allocation.domain.exceptions import DatabaseUnavailable, SchemaNotMigrated

MIGRATIONS_DIRECTORY = Path(__file__).resolve().with_name("migrations")

# The revision that creates the tables metadata.create_all used to make: a
# database made that way (before Alembic) is stamped with it, then upgraded.
INITIAL_REVISION = "0001"

# Key of the PostgreSQL advisory lock that serialises concurrent migrations
# (any fixed 64-bit number, the same for every instance of the service).
MIGRATION_LOCK_KEY = 4_172_937_220_190_581_001


def make_engine(
    database_url: str,
    autocommit: bool = False,
    statement_timeout_ms: int = 0,
    by_key: bool = False,
    own_transactions: bool = False,
) -> Engine:
    """An engine and its pool. Writes rely on PostgreSQL's default, READ COMMITTED
    (the version check and the row lock make it safe); ``autocommit`` is for reads,
    which then need no BEGIN or ROLLBACK round trip.

    Pooled connections are not checked before use (that would be one more round
    trip per request): one the server dropped fails once, the pool then replaces
    all of its connections, and the caller runs the request again.

    ``statement_timeout_ms`` (PostgreSQL) bounds every statement, lock waits
    included, so that nothing can hold a worker indefinitely; 0 means no bound.
    The same bound holds on the client side for a server that vanished without
    closing its connections (a machine that died): TCP keepalives and a TCP
    user timeout drop such a connection instead of waiting for its answer.

    With several hosts and ``target_session_attrs=read-write``, a new connection
    goes to whichever host is the primary now: after a failover, the pool is
    replaced at the first dropped connection and the new ones reach the new primary.

    ``by_key`` (PostgreSQL: ``enable_seqscan=off``) is for the service's own work,
    whose prepared statements all find rows by an index. After its fifth run a
    prepared statement may keep one generic plan for good, made from the statistics
    of that moment; made while a table was nearly empty (a new deployment, a new
    table), it reads the whole table, and goes on doing so as the table grows: the
    hold loads took 0.5 ms instead of 0.02 after 8,000 holds. Only a statement with
    no index to use still scans; reports over whole tables (the command line's) run without it.
    """
    url = make_url(database_url)
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30}, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {"connect_timeout": 3, **KEEPALIVES}
    server_settings = ["-c enable_seqscan=off"] if by_key else []
    if statement_timeout_ms:
        server_settings.append(f"-c statement_timeout={int(statement_timeout_ms)}")
        connect_args["tcp_user_timeout"] = int(statement_timeout_ms)
    if server_settings:
        connect_args["options"] = " ".join(server_settings)
    engine = create_engine(
        url,
        connect_args=connect_args,
        pool_size=10,
        max_overflow=10,
        # An autocommit connection has nothing to roll back when it returns.
        pool_reset_on_return=None if autocommit else "rollback",
        **options,
    )
    _follow_failovers(engine)
    if own_transactions:
        event.listen(engine, "before_cursor_execute", _begin_in_front, retval=True)
        _OWN_TRANSACTIONS.add(engine)
    return engine


# libpq's keepalives on a silent connection: the first probe after 2 s, then one a
# second; with tcp_user_timeout, a peer that acknowledges nothing is given up.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1}


def _follow_failovers(engine: Engine) -> None:
    """Every new connection notes which server it reached (a change is a failover);
    a dropped one is counted; and a server that turned read-only under a pooled
    connection (a primary demoted without a restart) counts as a lost connection,
    so that the pool is replaced and the command runs again on the new primary."""
    event.listen(engine, "connect", _reached)
    event.listen(engine, "invalidate", _dropped)
    event.listen(engine, "handle_error", _read_only_is_a_disconnect)


def _reached(dbapi_connection: Any, _record: object) -> None:
    info = dbapi_connection.info
    failover.DATABASE.reached(failover.address(info.host, info.port))


def _dropped(_dbapi_connection: object, _record: object, error: BaseException | None) -> None:
    if error is not None:  # not a connection thrown away on purpose
        metrics.DATABASE_RECONNECTS.inc()


# PostgreSQL's SQLSTATE for a write in a read-only transaction (a standby's answer).
READ_ONLY_SQLSTATE = "25006"
# ... and for a statement cancelled by statement_timeout.
STATEMENT_TIMEOUT_SQLSTATE = "57014"


def _read_only_is_a_disconnect(context: ExceptionContext) -> None:
    if getattr(context.original_exception, "pgcode", None) == READ_ONLY_SQLSTATE:
        context.is_disconnect = True  # type: ignore[misc]  # settable here, says its doc


# -- transactions sent with the statements they hold -------------------------------------------
#
# The driver sends BEGIN in a round trip of its own before a transaction's first
# statement, and COMMIT in another. On an engine made with ``own_transactions``, a
# Unit of Work puts its connection's driver in autocommit mode instead and has
# BEGIN travel in front of its first statement and COMMIT behind its last writes:
# two round trips fewer per change. It sets psycopg2's ``autocommit`` attribute,
# which sends nothing, rather than SQLAlchemy's AUTOCOMMIT isolation level, whose
# reset when the connection goes back to the pool costs a round trip (a SET) of
# its own. The state lives in the pooled connection's ``info``, which every round
# trip of that connection sees (below), whichever code sends it.

_TRANSACTION = "allocation.explicit_transaction"
_BEGIN_NEXT, _OPEN = "begin with the next statement", "open"
_OWN_TRANSACTIONS: weakref.WeakSet[Engine] = weakref.WeakSet()


def makes_own_transactions(engine: Engine) -> bool:
    """Whether the engine was made with ``own_transactions`` (on PostgreSQL)."""
    return engine in _OWN_TRANSACTIONS


def begin_with_next_statement(connection: Connection) -> None:
    """The connection's next round trip starts a transaction (in front of its SQL), and
    so does the first one after each transaction_ended; stop_explicit_transactions
    before the connection is closed."""
    connection.connection.driver_connection.autocommit = True  # type: ignore[union-attr]
    connection.info[_TRANSACTION] = _BEGIN_NEXT


def in_explicit_transaction(connection: Connection) -> bool:
    """Whether a BEGIN sent in front of a statement is open on the server."""
    return connection.info.get(_TRANSACTION) == _OPEN


def explicit_transactions(connection: Connection) -> bool:
    """Whether the connection sends its own BEGIN (begin_with_next_statement)."""
    return _TRANSACTION in connection.info


def transaction_ended(connection: Connection) -> None:
    """COMMIT or ROLLBACK went through: the next round trip begins a new one."""
    connection.info[_TRANSACTION] = _BEGIN_NEXT


def stop_explicit_transactions(connection: Connection) -> None:
    """The connection goes back to the pool, to code that lets the driver begin."""
    if connection.info.pop(_TRANSACTION, None) is not None:
        connection.connection.driver_connection.autocommit = False  # type: ignore[union-attr]


def answered_before_commit(error: sa_exc.DBAPIError) -> bool:
    """The server refused a statement sent in front of COMMIT, which then never ran:
    a statement timeout, or a write refused by a standby."""
    return getattr(error.orig, "pgcode", None) in (STATEMENT_TIMEOUT_SQLSTATE, READ_ONLY_SQLSTATE)


def _begin_in_front(
    connection: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    _context: object,
    executemany: bool,
) -> tuple[str, Any]:
    if connection.info.get(_TRANSACTION) != _BEGIN_NEXT:
        return statement, parameters
    if executemany:  # the statement runs once per row: BEGIN goes first, alone
        cursor.execute("BEGIN")
    else:
        statement = "BEGIN; " + statement
    connection.info[_TRANSACTION] = _OPEN
    return statement, parameters


@dataclass(frozen=True)
class Server:
    """The database server a connection reached, and whether it takes writes."""

    host: str
    port: int
    primary: bool


def reached_server(engine: Engine) -> Server | None:
    """Which PostgreSQL server a new connection of the engine reaches now (None on
    SQLite). Raises the driver's error when there is none to reach."""
    if engine.dialect.name != "postgresql":
        return None
    with engine.connect() as connection:
        standby = connection.execute(text("SELECT pg_is_in_recovery()")).scalar_one()
        info = connection.connection.dbapi_connection.info  # type: ignore[union-attr]
        return Server(str(info.host), int(info.port), not standby)


def is_postgresql(connection: Connection) -> bool:
    """Whether the database is PostgreSQL (some statements exist only there)."""
    return connection.dialect.name == "postgresql"


def is_unavailable(error: sa_exc.DBAPIError) -> bool:
    """Lost or refused connections, as opposed to errors in what we asked."""
    if error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.InterfaceError):
        return True
    if isinstance(error, sa_exc.OperationalError):
        sqlstate = getattr(error.orig, "pgcode", None)
        # No SQLSTATE: the driver never reached the server. Class 08: connection
        # exception; 57P0x: the server is shutting down or cannot accept connections;
        # 57014: a statement ran past the statement timeout.
        if sqlstate is None:
            return "database is locked" not in str(error.orig)
        return str(sqlstate).startswith(("08", "57P", STATEMENT_TIMEOUT_SQLSTATE))
    return False


# PostgreSQL SQLSTATEs that mean "another transaction got there first".
_CONFLICT_SQLSTATES = {"23505", "40001", "40P01"}


def is_conflict(error: sa_exc.DBAPIError) -> bool:
    """Unique violations, serialization failures and deadlocks resolve on retry."""
    sqlstate = getattr(error.orig, "pgcode", None)
    if sqlstate in _CONFLICT_SQLSTATES:
        return True
    message = str(error.orig).lower()
    # SQLite reports a lost write race as a lock or a uniqueness failure.
    return "database is locked" in message or "unique constraint failed" in message


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


def shown_url(engine: Engine) -> str:
    """The engine's URL for a person: no password."""
    return engine.url.render_as_string(hide_password=True)


def schema_problem(engine: Engine) -> SchemaNotMigrated | None:
    """None when the schema is at this code's head; else what is wrong. A SQLite
    file that does not exist is reported, not created. Raises DatabaseUnavailable
    when the database cannot be reached."""
    where = shown_url(engine)
    path = engine.url.database
    is_file = engine.url.get_backend_name() == "sqlite" and path and path != ":memory:"
    if is_file and not Path(str(path)).exists():
        return SchemaNotMigrated(f"no database file {Path(str(path)).resolve()}", where)
    try:
        current = current_revision(engine)
    except sa_exc.DBAPIError as error:
        raise DatabaseUnavailable(str(error.orig).strip()) from error
    head = head_revision()
    if current == head:
        return None
    state = "empty" if current is None else f"at revision {current}, this code needs {head}"
    return SchemaNotMigrated(state, where)


def is_missing_schema(error: BaseException) -> bool:
    """A table or column the code needs is not there: the schema is behind.
    Takes SQLAlchemy's wrapper or the driver's own error."""
    driver_error = getattr(error, "orig", None) or error
    if getattr(driver_error, "pgcode", None) in _MISSING_SCHEMA_SQLSTATES:
        return True
    return str(driver_error).startswith(("no such table", "no such column"))


# PostgreSQL: undefined table, undefined column.
_MISSING_SCHEMA_SQLSTATES = {"42P01", "42703"}


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
