"""The read models (CQRS): written in the change's own transaction, read without any aggregate.

``SqlAlchemyAllocationsView`` is the write side, used by the Unit of Work at
commit. ``SqlReadModel`` answers the HTTP queries: one prepared statement on a
pooled autocommit connection, with no Session and no transaction around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from allocation.adapters import database, orm
from allocation.adapters.statements import (
    WriteBatch,
    mark_prepared,
    param,
    preamble,
    statement,
)
from allocation.domain.exceptions import DatabaseUnavailable
from allocation.service_layer.ports import AbstractAllocationsView, AbstractReadModel, AllocationRow

_VIEW = orm.allocations_view
_ORDERID = param("orderid", _VIEW.c.orderid)
_SKU = param("sku", _VIEW.c.sku)
_BATCHREF = param("batchref", _VIEW.c.batchref)


def _upsert(insert: Any) -> Any:
    """INSERT … ON CONFLICT DO UPDATE, which PostgreSQL and SQLite both speak."""
    new_row = insert(_VIEW).values(orderid=_ORDERID, sku=_SKU, batchref=_BATCHREF)
    return new_row.on_conflict_do_update(
        index_elements=[_VIEW.c.orderid, _VIEW.c.sku], set_={"batchref": new_row.excluded.batchref}
    )


VIEW_UPSERT = statement(
    "upsert_allocation_view_row", _upsert(postgresql.insert), _upsert(sqlite.insert)
)
VIEW_DELETE = statement(
    "delete_allocation_view_row",
    delete(_VIEW).where(_VIEW.c.orderid == _ORDERID, _VIEW.c.sku == _SKU),
)
ALLOCATIONS_FOR_ORDER = statement(
    "allocations_for_order",
    select(_VIEW.c.sku, _VIEW.c.batchref).where(_VIEW.c.orderid == _ORDERID).order_by(_VIEW.c.sku),
)


class SqlAlchemyAllocationsView(AbstractAllocationsView):
    """Rows are queued on the Unit of Work's writes and sent with its commit."""

    def __init__(self, session: Session, writes: WriteBatch) -> None:
        self.session = session
        self._writes = writes

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        self._writes.add(VIEW_UPSERT, {"orderid": orderid, "sku": sku, "batchref": batchref})

    def remove(self, orderid: str, sku: str) -> None:
        self._writes.add(VIEW_DELETE, {"orderid": orderid, "sku": sku})

    def all_rows(self) -> set[AllocationRow]:
        rows = self.session.execute(select(_VIEW.c.orderid, _VIEW.c.sku, _VIEW.c.batchref))
        return {(row[0], row[1], row[2]) for row in rows}


T = TypeVar("T")


class SqlReadModel(AbstractReadModel):
    """Queries on an engine of autocommit connections (a read needs no transaction).

    Connections are not checked before use: a pooled connection that the
    database dropped (a restart, say) fails once, is thrown away, and the query
    runs again on a fresh one; a database that is really down fails both times.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._on_postgresql = engine.dialect.name == "postgresql"

    def allocations_for_order(self, orderid: str) -> list[dict[str, str]]:
        rows = self._twice(lambda: self._rows(orderid))
        return [{"sku": sku, "batchref": batchref} for sku, batchref in rows]

    def _rows(self, orderid: str) -> list[Any]:
        if self._on_postgresql:
            return self._prepared_rows(orderid)
        try:
            with self._engine.connect() as connection:
                params = {"orderid": orderid}
                return list(ALLOCATIONS_FOR_ORDER.execute(connection, params))
        except sa_exc.DBAPIError as error:
            if database.is_unavailable(error):
                raise DatabaseUnavailable(str(error.orig)) from error
            raise

    def _prepared_rows(self, orderid: str) -> list[Any]:
        """The driver's own cursor on a pooled connection: the hottest path of the service."""
        driver_error = self._engine.dialect.loaded_dbapi.Error
        try:
            pooled = self._engine.raw_connection()
        except (sa_exc.DBAPIError, driver_error) as error:  # cannot connect at all
            raise DatabaseUnavailable(str(error)) from error
        try:
            cursor = pooled.cursor()
            try:
                sql = preamble(pooled.info) + ALLOCATIONS_FOR_ORDER.call()
                cursor.execute(sql, (orderid,))
                mark_prepared(pooled.info)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except driver_error as error:
            if self._engine.dialect.is_disconnect(error, pooled.dbapi_connection, None):
                pooled.invalidate(error)
                raise DatabaseUnavailable(str(error)) from error
            raise
        finally:
            pooled.close()

    @staticmethod
    def _twice(query: Callable[[], T]) -> T:
        try:
            return query()
        except DatabaseUnavailable:
            return query()
