"""The query side (CQRS): the HTTP reads, each one prepared statement on a pooled
autocommit connection, with no Session, no transaction and no aggregate loaded."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Date, Engine, String, any_, cast, literal_column, null, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY

from allocation.adapters.read_models.read_model import AVAILABILITY_COLUMNS, decode
from allocation.adapters.sql import database, orm
from allocation.adapters.sql.statements import Statement, mark_prepared, param, preamble, statement
from allocation.domain.availability import Availability
from allocation.domain.exceptions import DatabaseUnavailable, SchemaNotMigrated
from allocation.domain.holds import HoldState, status_seen_at
from allocation.domain.movements import Movement
from allocation.service_layer.ports import (
    AbstractReadModel,
    MovementRecord,
    OrderLineState,
    WaitingLine,
)

_VIEW, _AVAILABILITY = orm.allocations_view, orm.availability_view
_A, _B, _W = orm.allocations, orm.batches, orm.backorders
_H, _M = orm.holds, orm.stock_movements

ALLOCATIONS_FOR_ORDER = statement(
    "allocations_for_order",
    select(_VIEW.c.sku, _VIEW.c.batchref)
    .where(_VIEW.c.orderid == param("orderid", _VIEW.c.orderid))
    .order_by(_VIEW.c.sku),
)
_AVAILABILITY_COLUMNS = [_AVAILABILITY.c[n] for n in AVAILABILITY_COLUMNS]
AVAILABILITY = statement(
    "availability_of_skus",
    select(*_AVAILABILITY_COLUMNS).where(
        _AVAILABILITY.c.sku == any_(param("skus", ARRAY(String(orm.NAME_LENGTH))))
    ),
    select(*_AVAILABILITY_COLUMNS).where(
        _AVAILABILITY.c.sku.in_(param("skus", _AVAILABILITY.c.sku, expanding=True))
    ),
)
AVAILABILITY_OF_ONE = statement(
    "availability_of_sku",
    select(*_AVAILABILITY_COLUMNS).where(_AVAILABILITY.c.sku == param("sku", _AVAILABILITY.c.sku)),
)
_ORDER = param("orderid", _A.c.orderid)
ORDER_LINES = statement(
    "lines_of_order",
    select(_A.c.sku, _A.c.qty, literal_column("'allocated'"), _B.c.reference, _B.c.eta)
    .join(_B, _B.c.id == _A.c.batch_id)
    .where(_A.c.orderid == _ORDER)
    .union_all(
        select(
            _W.c.sku,
            _W.c.qty,
            literal_column("'backordered'"),
            cast(null(), String),
            cast(null(), Date),
        ).where(_W.c.orderid == _ORDER)
    )
    .order_by("sku"),
)
WAITING_LINES = statement(
    "queue_of_sku",
    select(_W.c.orderid, _W.c.qty, _W.c.since)
    .where(_W.c.sku == param("sku", _W.c.sku))
    .order_by(_W.c.since, _W.c.id),
)

HOLD = statement(
    "hold_by_id",
    select(
        _H.c.holdid, _H.c.sku, _H.c.qty, _H.c.batchref, _H.c.status, _H.c.expires_at, _H.c.orderid
    ).where(_H.c.holdid == param("holdid", _H.c.holdid)),
)
_MOVEMENT_COLUMNS = [
    _M.c.seq,
    _M.c.kind,
    _M.c.qty,
    _M.c.batchref,
    _M.c.version,
    _M.c.reason,
    _M.c.orderid,
    _M.c.holdid,
    _M.c.at,
    _M.c.source,
]
MOVEMENTS = statement(
    "movements_of_sku",
    select(*_MOVEMENT_COLUMNS)
    .where(_M.c.sku == param("sku", _M.c.sku), _M.c.seq > param("after", _M.c.seq))
    .order_by(_M.c.seq)
    .limit(param("limit", _M.c.qty)),
)


class SqlReadModel(AbstractReadModel):
    """Queries on an engine of autocommit connections (a read needs no transaction).

    Connections are not checked before use: a pooled connection that the
    database dropped (a restart, say) fails once, is thrown away, and the query
    runs again on a fresh one; a database that is really down fails both times.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._run = self._prepared if engine.dialect.name == "postgresql" else self._portable
        self._driver_error: Any = engine.dialect.loaded_dbapi.Error  # the driver's base error

    def allocations_for_order(self, orderid: str) -> list[dict[str, str]]:
        rows = self._rows(ALLOCATIONS_FOR_ORDER, {"orderid": orderid})
        return [{"sku": sku, "batchref": batchref} for sku, batchref in rows]

    def availability(self, skus: Sequence[str]) -> list[Availability]:
        if len(skus) == 1:  # the common question, answered by the primary key
            return [decode(*row) for row in self._rows(AVAILABILITY_OF_ONE, {"sku": skus[0]})]
        found = {row[0]: decode(*row) for row in self._rows(AVAILABILITY, {"skus": list(skus)})}
        return [found[sku] for sku in dict.fromkeys(skus) if sku in found]

    def order_lines(self, orderid: str) -> list[OrderLineState]:
        rows = self._rows(ORDER_LINES, {"orderid": orderid})
        # Sorted here, not by the database's collation: the same order everywhere.
        return sorted((OrderLineState(*row) for row in rows), key=lambda line: line.sku)

    def waiting_lines(self, sku: str) -> list[WaitingLine]:
        rows = self._rows(WAITING_LINES, {"sku": sku})
        return [WaitingLine(orderid, qty, _utc(since)) for orderid, qty, since in rows]

    def hold(self, holdid: str, now: datetime) -> HoldState | None:
        rows = self._rows(HOLD, {"holdid": holdid})
        if not rows:
            return None
        holdid, sku, qty, batchref, status, expires_at, orderid = rows[0]
        expires_at = _utc(expires_at)
        status = status_seen_at(status, expires_at, now)
        return HoldState(holdid, sku, qty, batchref, status, expires_at, orderid)

    def movements(self, sku: str, after: int, limit: int) -> list[MovementRecord]:
        rows = self._rows(MOVEMENTS, {"sku": sku, "after": after, "limit": limit})
        return [
            MovementRecord(
                Movement(seq, kind, qty, batchref, version, reason, orderid, holdid),
                _utc(at),
                json.loads(source),
            )
            for seq, kind, qty, batchref, version, reason, orderid, holdid, at, source in rows
        ]

    def _rows(self, query: Statement, params: Mapping[str, Any]) -> list[Any]:
        try:
            return self._run(query, params)
        except DatabaseUnavailable:
            return self._run(query, params)

    def _portable(self, query: Statement, params: Mapping[str, Any]) -> list[Any]:
        try:
            with self._engine.connect() as connection:
                return list(query.execute(connection, params))
        except sa_exc.DBAPIError as error:
            if database.is_missing_schema(error):
                raise SchemaNotMigrated(str(error.orig)) from error
            if database.is_unavailable(error):
                raise DatabaseUnavailable(str(error.orig)) from error
            raise

    def _prepared(self, query: Statement, params: Mapping[str, Any]) -> list[Any]:
        """The driver's own cursor on a pooled connection: the hottest path of the service."""
        driver_error = self._driver_error
        try:
            pooled = self._engine.raw_connection()
        except (sa_exc.DBAPIError, driver_error) as error:  # cannot connect at all
            raise DatabaseUnavailable(str(error)) from error
        try:
            cursor = pooled.cursor()
            try:
                cursor.execute(preamble(pooled.info) + query.call(), query.arguments(params))
                mark_prepared(pooled.info)
                return list(cursor.fetchall())
            finally:
                cursor.close()
        except driver_error as error:
            if database.is_missing_schema(error):
                raise SchemaNotMigrated(str(error).splitlines()[0]) from error
            if self._engine.dialect.is_disconnect(error, pooled.dbapi_connection, None):
                pooled.invalidate(error)
                # The others went with the same server (a restart, a failover): a
                # fresh pool, as the engine makes for a write on a dropped connection.
                self._engine.dispose(close=False)
                raise DatabaseUnavailable(str(error)) from error
            raise
        finally:
            pooled.close()


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
