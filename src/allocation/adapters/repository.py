"""The SQLAlchemy repository: products loaded through the classical mapping, written as rows.

Loading goes through the imperative mapping (``orm.py``), from prepared
statements on PostgreSQL. Writing does not use the ORM's flush: the repository
remembers what it loaded and, at commit, turns the difference into a few
pre-built statements that the Unit of Work sends in one round trip, ending with
the versioned UPDATE of the product that makes the change conditional on
nobody else having changed the product since it was read.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Executable, Select, and_, delete, insert, select, text, update
from sqlalchemy.orm import Mapper, QueryableAttribute, Session, class_mapper, contains_eager

from allocation.adapters import database, orm
from allocation.adapters.statements import (
    Statement,
    WriteBatch,
    bound,
    mark_prepared,
    param,
    preamble,
    statement,
)
from allocation.domain import model
from allocation.service_layer.ports import AbstractRepository, AllocationRow
from allocation.service_layer.product_changes import ProductChanges

_P, _B, _A = orm.products, orm.batches, orm.allocations


# -- reads: lock the product's row, then read it in a snapshot taken after the lock ----------

LOCK_BY_SKU = statement(
    "lock_product_by_sku",
    select(_P.c.sku).where(_P.c.sku == param("sku", _P.c.sku)).with_for_update(),
)
LOCK_BY_BATCHREF = statement(
    "lock_product_by_batchref",
    select(_P.c.sku)
    .where(
        _P.c.sku
        == select(_B.c.sku).where(_B.c.reference == param("ref", _B.c.reference)).scalar_subquery()
    )
    .with_for_update(),
)

_PRODUCT_COLUMNS = [_P.c.sku, _P.c.version_number]
_BATCH_COLUMNS = [
    _B.c.id,
    _B.c.reference,
    _B.c.sku,
    _B.c.purchased_quantity,
    _B.c.allocated_quantity,
    _B.c.eta,
]
_LINE_COLUMNS = [_A.c.id, _A.c.batch_id, _A.c.orderid, _A.c.sku, _A.c.qty]


def _product_rows(lines: Any | None) -> Select[Any]:
    """The product, its batches and the lines that meet ``lines`` (none if None), a row each."""
    joined = _P.outerjoin(_B, _B.c.sku == _P.c.sku)
    columns = [*_PRODUCT_COLUMNS, *_BATCH_COLUMNS]
    if lines is not None:
        joined = joined.outerjoin(_A, lines)
        columns += _LINE_COLUMNS
    return select(*columns).select_from(joined).order_by(_B.c.id)


_LINE_OF_BATCH = _A.c.batch_id == _B.c.id
PRODUCT_WITH_BATCHES = statement(
    "product_with_batches", _product_rows(None).where(_P.c.sku == param("sku", _P.c.sku))
)
PRODUCT_WITH_LINES_OF_ORDER = statement(
    "product_with_lines_of_order",
    _product_rows(and_(_LINE_OF_BATCH, _A.c.orderid == param("orderid", _A.c.orderid))).where(
        _P.c.sku == param("sku", _P.c.sku)
    ),
)
PRODUCT_WITH_ALL_LINES = statement(
    "product_with_all_lines_by_batchref",
    _product_rows(_LINE_OF_BATCH).where(
        _P.c.sku
        == select(_B.c.sku).where(_B.c.reference == param("ref", _B.c.reference)).scalar_subquery()
    ),
)

# -- writes -----------------------------------------------------------------------------------

INSERT_PRODUCT = statement(
    "insert_product",
    insert(_P)
    .values(sku=param("sku", _P.c.sku), version_number=param("version", _P.c.version_number))
    .inline(),
)
BUMP_VERSION = statement(
    "bump_product_version",
    update(_P)
    .where(
        _P.c.sku == param("sku", _P.c.sku),
        _P.c.version_number == param("read_version", _P.c.version_number),
    )
    .values(version_number=param("version", _P.c.version_number)),
)
INSERT_BATCH = statement(
    "insert_batch",
    insert(_B)
    .values(
        reference=param("ref", _B.c.reference),
        sku=param("sku", _B.c.sku),
        purchased_quantity=param("purchased", _B.c.purchased_quantity),
        allocated_quantity=param("allocated", _B.c.allocated_quantity),
        eta=param("eta", _B.c.eta),
    )
    .inline(),
)
UPDATE_BATCH = statement(
    "update_batch_quantities",
    update(_B)
    .where(_B.c.reference == param("ref", _B.c.reference))
    .values(
        purchased_quantity=param("purchased", _B.c.purchased_quantity),
        allocated_quantity=param("allocated", _B.c.allocated_quantity),
    ),
)
INSERT_LINE = statement(
    "insert_order_line",
    insert(_A)
    .from_select(
        ["batch_id", "orderid", "sku", "qty"],
        select(
            _B.c.id,
            param("orderid", _A.c.orderid),
            param("sku", _A.c.sku),
            param("qty", _A.c.qty),
        ).where(_B.c.reference == param("ref", _B.c.reference)),
    )
    .inline(),
)
DELETE_LINE = statement(
    "delete_order_line",
    delete(_A).where(
        _A.c.orderid == param("orderid", _A.c.orderid), _A.c.sku == param("sku", _A.c.sku)
    ),
)


class SqlAlchemyRepository(AbstractRepository):
    """Products through the classical mapping; changes queued by ``write_changes``."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    def _add(self, product: model.Product) -> None:
        pass  # written by write_changes, like every other change

    def _get(self, sku: str) -> model.Product | None:
        return self._load(LOCK_BY_SKU, PRODUCT_WITH_BATCHES, {"sku": sku}, with_lines=False)

    def _for_allocation(self, sku: str, orderid: str) -> model.Product | None:
        params = {"sku": sku, "orderid": orderid}
        return self._load(LOCK_BY_SKU, PRODUCT_WITH_LINES_OF_ORDER, params, with_lines=True)

    def _for_batch_change(self, ref: str) -> model.Product | None:
        return self._load(LOCK_BY_BATCHREF, PRODUCT_WITH_ALL_LINES, {"ref": ref}, with_lines=True)

    def has_batch(self, ref: str) -> bool:
        return (
            self.session.execute(select(_B.c.id).where(_B.c.reference == ref)).first() is not None
        )

    def _load(
        self, lock: Statement | None, rows: Statement, params: dict[str, str], with_lines: bool
    ) -> model.Product | None:
        """Products are read to be changed: on PostgreSQL the product's row is locked
        first, so a second writer of the same SKU waits instead of doing its work
        twice, and the product is then read in a snapshot taken after the lock (the
        two statements share one round trip). The versioned UPDATE at commit stays
        the guarantee."""
        connection = self.session.connection()
        if not database.is_postgresql(connection):
            query = _orm_query(lock, rows, with_lines, None)
            return self.session.scalars(query, bound(params)).unique().first()
        info = connection.connection.info
        query = _orm_query(lock, rows, with_lines, preamble(info))
        product = self.session.scalars(query, params).unique().first()
        mark_prepared(info)
        return product

    def write_changes(self, writes: WriteBatch) -> None:
        """Queues the rows that changed since the products were read (or added)."""
        for changes in self.changes():
            if changes.rows_changed:
                _write(changes, writes)

    def allocation_rows(self) -> set[AllocationRow]:
        query = select(_A.c.orderid, _A.c.sku, _B.c.reference).join(_B, _B.c.id == _A.c.batch_id)
        return {(row[0], row[1], row[2]) for row in self.session.execute(query)}


def _write(changes: ProductChanges, writes: WriteBatch) -> None:
    product = changes.product
    if changes.is_new:
        writes.add(INSERT_PRODUCT, {"sku": product.sku, "version": product.version_number})
    for batch in changes.new_batches:
        quantities = {"purchased": batch.purchased_quantity, "allocated": batch.allocated_quantity}
        writes.add(
            INSERT_BATCH, {"ref": batch.reference, "sku": batch.sku, "eta": batch.eta, **quantities}
        )
    for batch in changes.changed_batches:
        quantities = {"purchased": batch.purchased_quantity, "allocated": batch.allocated_quantity}
        writes.add(UPDATE_BATCH, {"ref": batch.reference, **quantities})
    # Deletions first: a line moving to another batch keeps its (orderid, sku).
    for line in changes.removed_lines:
        writes.add(DELETE_LINE, {"orderid": line.orderid, "sku": line.sku})
    for ref, line in changes.added_lines:
        writes.add(
            INSERT_LINE, {"ref": ref, "orderid": line.orderid, "sku": line.sku, "qty": line.qty}
        )
    if not changes.is_new:
        # Last: only the last statement of a round trip reports its row count.
        version = {"sku": product.sku, "read_version": changes.read_version}
        writes.add_checked(BUMP_VERSION, {**version, "version": product.version_number})


# -- the ORM side: the same rows, hydrated through the classical mapping ---------------------


@functools.cache
def _orm_query_for(
    mapper: Mapper[Any],
    lock: Statement | None,
    rows: Statement,
    with_lines: bool,
    prefix: str | None,
) -> Executable:
    """The ORM query for a load: on PostgreSQL (``prefix`` not None) the prepared
    statements by name, after what a new connection needs first (``preamble``);
    elsewhere the statement itself."""
    batches = _mapped(model.Product, "batches")
    eager = contains_eager(batches)
    columns = [*_PRODUCT_COLUMNS, *_BATCH_COLUMNS]
    if with_lines:
        eager = eager.contains_eager(_mapped(model.Batch, "_allocations"))
        columns += _LINE_COLUMNS
    if prefix is not None:
        calls = [rows] if lock is None else [lock, rows]
        call = prefix + "; ".join(c.call_with_named_parameters().text for c in calls)
        # Matched to the columns by position: the prepared statement selects these.
        source: Any = text(call).columns(*columns)
    else:
        source = rows.construct
    return select(mapper).from_statement(source).options(eager)


def _orm_query(
    lock: Statement | None, rows: Statement, with_lines: bool, prefix: str | None
) -> Executable:
    return _orm_query_for(class_mapper(model.Product), lock, rows, with_lines, prefix)


def _mapped(cls: type, name: str) -> QueryableAttribute[Any]:
    """The class-level attribute the classical mapping made, for use in queries
    (to mypy the model's attributes are plain values)."""
    attribute: QueryableAttribute[Any] = class_mapper(cls).attrs[name].class_attribute
    return attribute
