"""The SQLAlchemy repository: products loaded through the classical mapping, written as rows.

Loading goes through the imperative mapping (``orm.py``), from prepared
statements (``product_statements.py``) on PostgreSQL. Writing does not use the
ORM's flush: the port remembers what each load read, and at commit the
repository turns the difference into a few pre-built statements that the Unit
of Work sends in one round trip, ending with the versioned UPDATE of the
product that makes the change conditional on nobody else having changed the
product since it was read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Executable, select, text, union
from sqlalchemy.orm import (
    Mapper,
    QueryableAttribute,
    Session,
    class_mapper,
    contains_eager,
    selectinload,
)
from sqlalchemy.orm.attributes import set_committed_value

from allocation.adapters.persistence import product_statements as sql
from allocation.adapters.sql import database, orm
from allocation.adapters.sql.statements import Statement, WriteBatch, bound, mark_prepared, preamble
from allocation.domain import model
from allocation.domain.availability import Availability
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
    all_waiting: bool = False  # read every waiting line with a statement of its own


_BATCHES_AND_QUEUE = _Load(sql.LOCK_BY_SKU, sql.PRODUCT_WITH_BATCHES, all_waiting=True)
_FOR_ALLOCATION = _Load(sql.LOCK_BY_SKU, sql.PRODUCT_FOR_ALLOCATION, lines=True, waiting=True)
_FOR_BATCH_CHANGE = _Load(
    sql.LOCK_BY_BATCHREF, sql.PRODUCT_WITH_ALL_LINES, lines=True, all_waiting=True
)
_FOR_CANCELLATION = _Load(
    sql.LOCK_BY_SKU, sql.PRODUCT_WITH_LINES_OF_ORDER, lines=True, all_waiting=True
)


class SqlAlchemyRepository(AbstractRepository):
    """Products through the classical mapping; changes queued by ``write_changes``."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

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

    def has_batch(self, ref: str) -> bool:
        found = self.session.execute(select(_B.c.id).where(_B.c.reference == ref)).first()
        return found is not None

    def skus_of_order(self, orderid: str) -> set[str]:
        query = union(
            select(_A.c.sku).where(_A.c.orderid == orderid),
            select(_W.c.sku).where(_W.c.orderid == orderid),
        )
        return {row[0] for row in self.session.execute(query)}

    def _load(self, load: _Load, params: dict[str, str]) -> model.Product | None:
        """Products are read to be changed: on PostgreSQL the product's row is locked
        first, so a second writer of the same SKU waits instead of doing its work
        twice, and the product is then read in a snapshot taken after the lock (the
        two statements share one round trip). The versioned UPDATE at commit stays
        the guarantee."""
        product: model.Product | None = self._read(functools.partial(_product_query, load), params)
        if product is not None and load.all_waiting:
            waiting = self._read(_waiting_query, {"sku": product.sku}, many=True)
            set_committed_value(product, "backorders", waiting)
        return product

    def _read(
        self,
        query_for: Callable[[str | None], Executable],
        params: dict[str, str],
        many: bool = False,
    ) -> Any:
        """Runs the ORM query ``query_for`` builds: given what a new PostgreSQL connection
        must send first (``preamble``), or None elsewhere."""
        connection = self.session.connection()
        if not database.is_postgresql(connection):
            result = self.session.scalars(query_for(None), bound(params)).unique()
            return result.all() if many else result.first()
        info = connection.connection.info
        result = self.session.scalars(query_for(preamble(info)), params).unique()
        found = result.all() if many else result.first()
        mark_prepared(info)
        return found

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
            },
        )
    _write_batches(changes, writes)
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
        # Last: only the last statement of a round trip reports its row count.
        writes.add_checked(
            sql.BUMP_VERSION,
            {
                "sku": product.sku,
                "read_version": changes.read_version,
                "version": product.version_number,
                "backordered": product.backordered_quantity,
            },
        )


def _write_batches(changes: ProductChanges, writes: WriteBatch) -> None:
    for batch in changes.new_batches:
        quantities = {"purchased": batch.purchased_quantity, "allocated": batch.allocated_quantity}
        writes.add(
            sql.INSERT_BATCH,
            {"ref": batch.reference, "sku": batch.sku, "eta": batch.eta, **quantities},
        )
    for batch in changes.changed_batches:
        quantities = {"purchased": batch.purchased_quantity, "allocated": batch.allocated_quantity}
        writes.add(sql.UPDATE_BATCH, {"ref": batch.reference, **quantities})


def _line_params(ref: str, line: model.OrderLine) -> dict[str, Any]:
    return {
        "ref": ref,
        "orderid": line.orderid,
        "sku": line.sku,
        "qty": line.qty,
        # A line made without its acceptance time takes its place in the queue now.
        "accepted_at": line.accepted_at or datetime.now(UTC),
    }


# -- the ORM side: the same rows, hydrated through the classical mapping ---------------------


def _product_query(load: _Load, prefix: str | None) -> Executable:
    return _built(class_mapper(model.Product), load, prefix)


def _waiting_query(prefix: str | None) -> Executable:
    return _built(class_mapper(model.Backorder), None, prefix)


@functools.cache
def _built(mapper: Mapper[Any], load: _Load | None, prefix: str | None) -> Executable:
    """The ORM query for a load of products (or, without one, of a product's waiting
    lines), built once per mapping: on PostgreSQL (``prefix`` not None) the prepared
    statements by name, after what a new connection needs first; elsewhere the
    statement itself."""
    statements = [sql.WAITING_LINES] if load is None else [load.lock, load.rows]
    rows = statements[-1]
    if prefix is not None:
        call = prefix + "; ".join(s.call_with_named_parameters() for s in statements)
        # Matched to the columns by position: the prepared statement selects these.
        columns = rows.construct.selected_columns  # type: ignore[attr-defined]
        source: Any = text(call).columns(*columns)
    else:
        source = rows.construct
    query = select(mapper).from_statement(source)
    return query if load is None else query.options(*_eager(load))


def _eager(load: _Load) -> list[Any]:
    """What the rows fill in, for the ORM: the batches, and the lines the load reads."""
    batches = contains_eager(_mapped(model.Product, "batches"))
    if load.lines:
        batches = batches.contains_eager(_mapped(model.Batch, "_allocations"))
    if load.waiting:
        return [batches, contains_eager(_mapped(model.Product, "backorders"))]
    return [batches]


def _mapped(cls: type, name: str) -> QueryableAttribute[Any]:
    """The class-level attribute the classical mapping made, for use in queries
    (to mypy the model's attributes are plain values)."""
    attribute: QueryableAttribute[Any] = class_mapper(cls).attrs[name].class_attribute
    return attribute
