"""The SQLAlchemy repository: products loaded through the classical mapping, written as rows.

Loading makes mapped instances of the imperative mapping (``orm.py``) from the
rows of prepared statements (``product_statements.py``) on PostgreSQL, a layout
worked out once per statement (``hydration.py``). Writing does not use the
ORM's flush: the port remembers what each load read, and at commit the
repository turns the difference into a few pre-built statements that the Unit
of Work sends in one round trip, ending with the versioned UPDATE of the
product that makes the change conditional on nobody else having changed the
product since it was read.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Executable, select, text, union
from sqlalchemy.orm import QueryableAttribute, Session, class_mapper, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from allocation.adapters.persistence import hydration
from allocation.adapters.persistence import product_statements as sql
from allocation.adapters.sql import database, orm
from allocation.adapters.sql.statements import Statement, WriteBatch, mark_prepared, preamble
from allocation.domain import model
from allocation.domain.availability import Availability
from allocation.domain.holds import Hold
from allocation.service_layer.ports import AbstractRepository, AllocationRow
from allocation.service_layer.product_changes import ProductChanges

_A, _B, _W = orm.allocations, orm.batches, orm.backorders


@dataclass(frozen=True)
class _Load:
    """One way of reading a product: the lock, the rows, and what they fill in."""

    lock: Statement
    rows: Statement
    lines: bool = False  # the rows carry (some) allocated lines
    waiting: bool = False  # the rows carry the order's waiting line
    holds: bool = False  # the rows carry the holds the load names
    all_waiting: bool = False  # read every waiting line with a statement of its own
    all_holds: bool = False  # read every active hold with a statement of its own
    # The queue may be served into the batches: their lines count as read, and none
    # is of interest (a waiting line is in no batch).
    serves_queue: bool = False


_BATCHES_AND_QUEUE = _Load(sql.LOCK_BY_SKU, sql.PRODUCT_WITH_BATCHES, all_waiting=True)
_FOR_ALLOCATION = _Load(sql.LOCK_BY_SKU, sql.PRODUCT_FOR_ALLOCATION, lines=True, waiting=True)
_FOR_BATCH_CHANGE = _Load(
    sql.LOCK_BY_BATCHREF,
    sql.PRODUCT_WITH_ALL_LINES,
    lines=True,
    all_waiting=True,
    all_holds=True,
)
_FOR_CANCELLATION = _Load(
    sql.LOCK_BY_SKU, sql.PRODUCT_WITH_LINES_OF_ORDER, lines=True, all_waiting=True
)
_FOR_NEW_HOLD = _Load(sql.LOCK_BY_SKU, sql.PRODUCT_FOR_NEW_HOLD, holds=True)
_FOR_HOLD = _Load(sql.LOCK_BY_HOLDID, sql.PRODUCT_WITH_HOLD, holds=True)
_FOR_HOLD_RELEASE = _Load(
    sql.LOCK_BY_HOLDID, sql.PRODUCT_WITH_HOLD, holds=True, all_waiting=True, serves_queue=True
)
_FOR_CONFIRMATION = _Load(
    sql.LOCK_BY_HOLDID, sql.PRODUCT_FOR_CONFIRMATION, lines=True, waiting=True, holds=True
)
_FOR_EXPIRY = _Load(
    sql.LOCK_BY_SKU, sql.PRODUCT_WITH_DUE_HOLDS, holds=True, all_waiting=True, serves_queue=True
)


class SqlAlchemyRepository(AbstractRepository):
    """Products through the classical mapping; changes queued by ``write_changes``.

    ``connection``, the session's own, spares the hot paths asking the session for it.
    """

    def __init__(self, session: Session, connection: Connection | None = None) -> None:
        super().__init__()
        self.session = session
        self._connection = connection

    def _sql(self) -> Connection:
        return self.session.connection() if self._connection is None else self._connection

    def _add(self, product: model.Product) -> None:
        pass  # written by write_changes, like every other change

    def _get(self, sku: str) -> model.Product | None:
        return self._load(_BATCHES_AND_QUEUE, {"sku": sku})

    def _for_allocation(self, sku: str, orderid: str) -> model.Product | None:
        return self._load(_FOR_ALLOCATION, {"sku": sku, "orderid": orderid})

    def _for_batch_change(self, ref: str) -> model.Product | None:
        return self._load(_FOR_BATCH_CHANGE, {"ref": ref})

    def _for_cancellation(self, sku: str, orderid: str) -> model.Product | None:
        return self._load(_FOR_CANCELLATION, {"sku": sku, "orderid": orderid})

    def _for_new_hold(self, sku: str, holdid: str) -> model.Product | None:
        return self._load(_FOR_NEW_HOLD, {"sku": sku, "holdid": holdid})

    def _for_hold(self, holdid: str, orderid: str | None, queue: bool) -> model.Product | None:
        if orderid is not None:
            return self._load(_FOR_CONFIRMATION, {"holdid": holdid, "orderid": orderid})
        return self._load(_FOR_HOLD_RELEASE if queue else _FOR_HOLD, {"holdid": holdid})

    def _for_expiry(self, sku: str, now: datetime) -> model.Product | None:
        return self._load(_FOR_EXPIRY, {"sku": sku, "now": now})

    def sku_of_hold(self, holdid: str) -> str | None:
        found = sql.SKU_OF_HOLD.execute(self._sql(), {"holdid": holdid}).first()
        return None if found is None else str(found[0])

    def skus_with_due_holds(self, now: datetime, limit: int) -> list[str]:
        params = {"now": now, "limit": limit}
        return [row[0] for row in sql.SKUS_WITH_DUE_HOLDS.execute(self._sql(), params)]

    def has_batch(self, ref: str) -> bool:
        found = self.session.execute(select(_B.c.id).where(_B.c.reference == ref)).first()
        return found is not None

    def skus_of_order(self, orderid: str) -> set[str]:
        query = union(
            select(_A.c.sku).where(_A.c.orderid == orderid),
            select(_W.c.sku).where(_W.c.orderid == orderid),
        )
        return {row[0] for row in self.session.execute(query)}

    def _load(self, load: _Load, params: dict[str, Any]) -> model.Product | None:
        """Products are read to be changed: on PostgreSQL the product's row is locked
        first, so a second writer of the same SKU waits instead of doing its work
        twice, and the product is then read in a snapshot taken after the lock (the
        two statements share one round trip). The versioned UPDATE at commit stays
        the guarantee."""
        rows = self._rows((load.lock, load.rows), params)
        product = _assembled(load, rows)
        if product is None:
            return None
        if load.all_waiting:
            waiting = _each(model.Backorder, sql.WAITING_LINES, self._rows(_WAITING, product))
            set_committed_value(product, "backorders", waiting)
        elif not load.waiting:  # nor one that names no waiting line any
            set_committed_value(product, "backorders", [])
        if load.all_holds:
            holds = _each(Hold, sql.ACTIVE_HOLDS, self._rows(_HOLDS, product))
            set_committed_value(product, "holds", holds)
        elif not load.holds:  # a load that names no hold hands out none
            set_committed_value(product, "holds", [])
        return product

    def _rows(
        self, statements: tuple[Statement, ...], params: dict[str, Any] | model.Product
    ) -> list[Any]:
        """The rows of the last of ``statements`` (the others, locks, are sent with it in
        one round trip on PostgreSQL); ``params`` may be a product: its SKU."""
        if isinstance(params, model.Product):
            params = {"sku": params.sku}
        connection = self._sql()
        if not database.is_postgresql(connection):  # SQLite locks the database, not rows
            return list(statements[-1].execute(connection, params))
        info = connection.connection.info
        rows = list(connection.execute(_sent_together(statements, preamble(info)), params))
        mark_prepared(info)
        return rows

    def write_changes(self, changes: Sequence[ProductChanges], writes: WriteBatch) -> None:
        """Queues the rows of the changed products (added, or changed since read)."""
        for change in changes:
            _write(change, writes)

    def allocation_rows(self) -> set[AllocationRow]:
        query = select(_A.c.orderid, _A.c.sku, _B.c.reference).join(_B, _B.c.id == _A.c.batch_id)
        return {(row[0], row[1], row[2]) for row in self.session.execute(query)}

    def availabilities(self) -> list[Availability]:
        # Through the mapping, so the domain says what a product's availability is.
        # FOR SHARE in SKU order: writers lock products FOR UPDATE in SKU order too.
        query = (
            select(model.Product)
            .options(selectinload(_mapped(model.Product, "batches")))
            .order_by(orm.products.c.sku)
            .with_for_update(read=True)
        )
        return [product.availability() for product in self.session.scalars(query)]


def _write(changes: ProductChanges, writes: WriteBatch) -> None:
    product = changes.product
    if changes.is_new:
        writes.add(
            sql.INSERT_PRODUCT,
            {
                "sku": product.sku,
                "version": product.version_number,
                "backordered": product.backordered_quantity,
                "movement_seq": product.movement_seq,
            },
        )
    _write_batches(changes, writes)
    for hold in changes.new_holds:
        writes.add(sql.INSERT_HOLD, _hold_params(hold))
    for hold in changes.changed_holds:
        writes.add(sql.UPDATE_HOLD, _hold_params(hold))
    # Deletions first: a line moving to another batch, or between a batch and the
    # queue, keeps its (orderid, sku).
    for line in changes.removed_lines:
        writes.add(sql.DELETE_LINE, {"orderid": line.orderid, "sku": line.sku})
    for orderid, sku, _qty, _since in changes.removed_waiting:
        writes.add(sql.DELETE_WAITING, {"orderid": orderid, "sku": sku})
    for ref, line in changes.added_lines:
        writes.add(sql.INSERT_LINE, _line_params(ref, line))
    for orderid, sku, qty, since in changes.added_waiting:
        writes.add(sql.INSERT_WAITING, {"orderid": orderid, "sku": sku, "qty": qty, "since": since})
    if not changes.is_new:
        # The version check: on PostgreSQL a stale version raises, elsewhere its row
        # count is checked; either way nothing of the change commits.
        writes.add_checked(
            sql.BUMP_VERSION,
            {
                "sku": product.sku,
                "read_version": changes.read_version,
                "version": product.version_number,
                "backordered": product.backordered_quantity,
                "movement_seq": product.movement_seq,
            },
        )


def _write_batches(changes: ProductChanges, writes: WriteBatch) -> None:
    for batch in changes.new_batches:
        writes.add(
            sql.INSERT_BATCH,
            {"ref": batch.reference, "sku": batch.sku, "eta": batch.eta, **_quantities(batch)},
        )
    for batch in changes.changed_batches:
        writes.add(sql.UPDATE_BATCH, {"ref": batch.reference, **_quantities(batch)})


def _quantities(batch: model.Batch) -> dict[str, int]:
    return {
        "purchased": batch.purchased_quantity,
        "allocated": batch.allocated_quantity,
        "held": batch.held_quantity,
    }


def _hold_params(hold: Hold) -> dict[str, Any]:
    return {
        "holdid": hold.holdid,
        "sku": hold.sku,
        "qty": hold.qty,
        "batchref": hold.batchref,
        "status": hold.status,
        "expires_at": hold.expires_at,
        "placed_at": hold.placed_at,
        "orderid": hold.orderid,
    }


def _line_params(ref: str, line: model.OrderLine) -> dict[str, Any]:
    return {
        "ref": ref,
        "orderid": line.orderid,
        "sku": line.sku,
        "qty": line.qty,
        # A line made without its acceptance time takes its place in the queue now.
        "accepted_at": line.accepted_at or datetime.now(UTC),
    }


# -- from rows to mapped instances -----------------------------------------------------------

_WAITING = (sql.WAITING_LINES,)
_HOLDS = (sql.ACTIVE_HOLDS,)
_PARTS = (model.Product, model.Batch, model.OrderLine, model.Backorder, Hold)


@functools.cache
def _sent_together(statements: tuple[Statement, ...], prefix: str) -> Executable:
    """The prepared statements by name, after what a new connection needs first, as
    one text whose rows are typed as the last statement's columns (matched by
    position: the prepared statement selects these)."""
    call = prefix + "; ".join(s.call_with_named_parameters() for s in statements)
    return text(call).columns(*_columns(statements[-1]))


def _columns(statement: Statement) -> tuple[Any, ...]:
    return tuple(statement.construct.selected_columns)  # type: ignore[attr-defined]


def _assembled(load: _Load, rows: list[Any]) -> model.Product | None:
    """The product the rows describe: one row per batch (and per line it holds), the
    waiting line and the hold the load names joined to them."""
    if not rows:
        return None
    product_part, batch_part, line_part, waiting_part, hold_part = hydration.layout(
        _columns(load.rows), *_PARTS
    )
    assert product_part is not None and batch_part is not None
    product: model.Product = product_part.make(rows[0])
    product.events, product.movements = [], []
    batches: dict[Any, model.Batch] = {}
    lines: dict[Any, set[model.OrderLine]] = {}
    found: dict[str, dict[Any, Any]] = {"backorders": {}, "holds": {}}
    for row in rows:
        batch_key = batch_part.key(row)
        if batch_key is not None and batch_key not in batches:
            batches[batch_key] = batch_part.make(row)
            lines[batch_key] = set()
        for name, part in (("backorders", waiting_part), ("holds", hold_part)):
            key = None if part is None else part.key(row)
            if part is not None and key is not None and key not in found[name]:
                found[name][key] = part.make(row)
        if line_part is not None and batch_key is not None and line_part.key(row) is not None:
            lines[batch_key].add(line_part.make(row))
    set_committed_value(product, "batches", list(batches.values()))
    if load.lines or load.serves_queue:
        for key, batch in batches.items():
            set_committed_value(batch, "_allocations", lines[key] if load.lines else set())
    for name, part in (("backorders", waiting_part), ("holds", hold_part)):
        if part is not None:
            set_committed_value(product, name, list(found[name].values()))
    return product


def _each(cls: type, statement: Statement, rows: list[Any]) -> list[Any]:
    """One instance of ``cls`` per row of ``statement``."""
    [part] = hydration.layout(_columns(statement), cls)
    assert part is not None
    return [part.make(row) for row in rows]


def _mapped(cls: type, name: str) -> QueryableAttribute[Any]:
    """The class-level attribute the classical mapping made, for use in queries
    (to mypy the model's attributes are plain values)."""
    attribute: QueryableAttribute[Any] = class_mapper(cls).attrs[name].class_attribute
    return attribute
