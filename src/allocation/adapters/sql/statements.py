"""The hot paths' SQL: built once from the table definitions, compiled once per database.

On PostgreSQL every statement here is PREPAREd once per connection, so the
server parses and plans it once rather than on every request, and is then run
by name (``EXECUTE name(...)``); several may share one round trip. The
PREPAREs travel in front of the first round trip a connection makes (after the
schema exists, so `allocation migrate` can use the same engines). Elsewhere
(SQLite, which `make run` uses) each statement runs on its own through
SQLAlchemy. Either way the SQL comes from the same Core construct.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Connection,
    CursorResult,
    Executable,
    Table,
    bindparam,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

# The psycopg2 dialect with PostgreSQL's own $1, $2 … parameters, as PREPARE wants them.
_DIALECT = postgresql.psycopg2.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True, eq=False)
class Statement:
    """A named Core construct whose parameters are all ``bindparam``s; ``elsewhere``
    is the construct for other databases when PostgreSQL's own syntax is used."""

    name: str
    construct: Executable
    elsewhere: Executable | None = None

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> CursorResult[Any]:
        """Runs the statement on its own: by name on PostgreSQL, compiled elsewhere."""
        if connection.dialect.name != "postgresql":
            return connection.execute(self.portable(), bound(params))
        info = connection.connection.info
        sql = preamble(info) + self.call()
        result = connection.exec_driver_sql(sql, tuple(self.arguments(params)))
        mark_prepared(info)
        return result

    def portable(self) -> Executable:
        """The construct for databases other than PostgreSQL."""
        return self.construct if self.elsewhere is None else self.elsewhere

    def call(self) -> str:
        """``EXECUTE name(%s, …)``, for the driver to fill in."""
        return _compiled(self).call

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The values in the order the prepared statement takes them."""
        return [params[name] for name in _compiled(self).names]

    def call_with_named_parameters(self) -> str:
        """The same call with ``:name`` parameters, for a ``text()`` construct."""
        names = ", ".join(f":{name}" for name in _compiled(self).names)
        return f"EXECUTE {self.name}({names})"


_REGISTRY: dict[str, Statement] = {}

# Parameters are bound as p_<name>: SQLAlchemy reads an INSERT's or UPDATE's
# parameters named like the table's columns as those columns' values.
_PREFIX = "p_"


def bound(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters as the constructs name them, to execute a construct itself."""
    return {_PREFIX + name: value for name, value in params.items()}


def param(name: str, type_: Any, expanding: bool = False) -> BindParameter[Any]:
    """A statement's parameter ``name``, of a column's type (or a type); ``expanding``
    for a list in ``IN (…)``."""
    return bindparam(_PREFIX + name, type_=getattr(type_, "type", type_), expanding=expanding)


def columns_as_params(table: Table, names: Sequence[str]) -> dict[str, BindParameter[Any]]:
    """``{column: param(column)}`` for the named columns of ``table``: a row given by
    parameters named like its columns."""
    return {name: param(name, table.c[name]) for name in names}


def upsert(name: str, table: Table, keys: Sequence[str], columns: Sequence[str]) -> Statement:
    """Registers ``INSERT … ON CONFLICT (keys) DO UPDATE`` of the other ``columns``,
    which PostgreSQL and SQLite both speak (each with its own construct)."""

    def build(insert: Any) -> Any:
        new_row = insert(table).values(**columns_as_params(table, columns))
        return new_row.on_conflict_do_update(
            index_elements=[table.c[key] for key in keys],
            set_={column: new_row.excluded[column] for column in columns if column not in keys},
        )

    return statement(name, build(postgresql.insert), build(sqlite.insert))


def statement(name: str, construct: Executable, elsewhere: Executable | None = None) -> Statement:
    """Registers a statement: every connection to PostgreSQL prepares it before first use."""
    if not _NAME.match(name) or name in _REGISTRY:
        raise ValueError(f"statement name {name!r} is not a fresh lower-case identifier")
    registered = Statement(name, construct, elsewhere)
    _REGISTRY[name] = registered
    return registered


_PREPARED = "allocation.prepared_statements"


def preamble(connection_info: MutableMapping[str, Any]) -> str:
    """What the next round trip on a connection must begin with so that every
    registered statement is prepared there: nothing once that has happened.

    ``connection_info`` is the pool's per-connection dictionary. DEALLOCATE ALL
    first, so that a preamble which failed half-way (PREPARE outlives a
    rollback) can simply be sent again.
    """
    if connection_info.get(_PREPARED) == len(_REGISTRY):
        return ""
    prepares = "; ".join(_compiled(registered).prepare for registered in _REGISTRY.values())
    return f"DEALLOCATE ALL; {prepares}; "


def mark_prepared(connection_info: MutableMapping[str, Any]) -> None:
    """Records that a round trip that began with the preamble succeeded."""
    connection_info[_PREPARED] = len(_REGISTRY)


@dataclass(frozen=True)
class _Compiled:
    prepare: str
    call: str
    names: Sequence[str]


@functools.cache
def _compiled(registered: Statement) -> _Compiled:
    compiled = cast(ClauseElement, registered.construct).compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    bound = list(compiled.positiontup or ())
    if not all(name.startswith(_PREFIX) for name in bound):
        raise ValueError(f"{registered.name}: make every parameter with param()")
    names = [name.removeprefix(_PREFIX) for name in bound]
    if len(set(names)) != len(names):
        raise ValueError(f"{registered.name}: use each parameter once, in one place")
    if "%" in compiled.string:
        raise ValueError(f"{registered.name}: a literal % would clash with the driver's %s")
    types = ", ".join(str(compiled.binds[name].type.compile(dialect=_DIALECT)) for name in bound)
    signature = f"({types})" if names else ""
    placeholders = ", ".join(["%s"] * len(names))
    return _Compiled(
        prepare=f"PREPARE {registered.name}{signature} AS {compiled.string}",
        call=f"EXECUTE {registered.name}({placeholders})"
        if names
        else f"EXECUTE {registered.name}",
        names=names,
    )


@dataclass(frozen=True)
class _Write:
    statement: Statement
    params: Mapping[str, Any]
    checked: bool


class WriteBatch:
    """A Unit of Work's writes, held until commit and then sent together.

    On PostgreSQL every write travels in one round trip, with COMMIT behind them
    when asked: a *checked* write (a versioned UPDATE) that changes no row must
    raise there (its statement's PostgreSQL construct does), which stops the
    statements after it. Elsewhere every write runs on its own and a checked
    write's row count is checked here.
    """

    def __init__(self) -> None:
        self._writes: list[_Write] = []

    def __len__(self) -> int:
        return len(self._writes)

    def add(self, statement: Statement, params: Mapping[str, Any]) -> None:
        self._writes.append(_Write(statement, params, checked=False))

    def add_checked(self, statement: Statement, params: Mapping[str, Any]) -> None:
        """A write that must change exactly one row, or the whole change is stale."""
        self._writes.append(_Write(statement, params, checked=True))

    def send(self, connection: Connection, then: str = "") -> bool:
        """Sends every write, and ``then`` (PostgreSQL: e.g. COMMIT) behind them in
        the same round trip; False when a checked write changed no row or several
        (PostgreSQL raises instead)."""
        writes, self._writes = self._writes, []
        if connection.dialect.name != "postgresql":
            return all(_run_alone(connection, write) for write in writes)
        calls = [write.statement.call() for write in writes] + ([then] if then else [])
        if calls:
            info = connection.connection.info
            arguments = [value for w in writes for value in w.statement.arguments(w.params)]
            connection.exec_driver_sql(preamble(info) + "; ".join(calls), tuple(arguments))
            mark_prepared(info)
        return True


def _run_alone(connection: Connection, write: _Write) -> bool:
    result = write.statement.execute(connection, write.params)
    return not write.checked or result.rowcount == 1
