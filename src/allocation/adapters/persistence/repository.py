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

    def _for_new_hold(self, sku: str, holdid: str) -> model.Product | None:
        return self._load(_FOR_NEW_HOLD, {"sku": sku, "holdid": holdid})

    def _for_hold(self, holdid: str, orderid: str | None, queue: bool) -> model.Product | None:
        if orderid is not None:
            return self._load(_FOR_CONFIRMATION, {"holdid": holdid, "orderid": orderid})
        return self._load(_FOR_HOLD_RELEASE if queue else _FOR_HOLD, {"holdid": holdid})

    def _for_expiry(self, sku: str, now: datetime) -> model.Product | None:
        return self._load(_FOR_EXPIRY, {"sku": sku, "now": now})

    def sku_of_hold(self, holdid: str) -> str | None:
        found = sql.SKU_OF_HOLD.execute(self.session.connection(), {"holdid": holdid}).first()
        return None if found is None else str(found[0])

    def skus_with_due_holds(self, now: datetime, limit: int) -> list[str]:
        params = {"now": now, "limit": limit}
        return [
            row[0] for row in sql.SKUS_WITH_DUE_HOLDS.execute(self.session.connection(), params)
        ]

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
        product: model.Product | None = self._read(functools.partial(_product_query, load), params)
        if product is None:
            return None
        if load.all_waiting:
            waiting = self._read(_WAITING_QUERY, {"sku": product.sku}, many=True)
            set_committed_value(product, "backorders", waiting)
        elif not load.waiting:  # nor one that names no waiting line any
            set_committed_value(product, "backorders", [])
        if load.all_holds:
            holds = self._read(_HOLDS_QUERY, {"sku": product.sku}, many=True)
            set_committed_value(product, "holds", holds)
        elif not load.holds:  # a load that names no hold hands out none
            set_committed_value(product, "holds", [])
        if load.serves_queue:
            for batch in product.batches:
                set_committed_value(batch, "_allocations", set())
        return product

    def _read(
        self,
        query_for: Callable[[str | None], Executable],
        params: dict[str, Any],
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
        # Last: only the last statement of a round trip reports its row count.
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


# -- the ORM side: the same rows, hydrated through the classical mapping ---------------------


def _product_query(load: _Load, prefix: str | None) -> Executable:
    return _built(class_mapper(model.Product), (load.lock, load.rows), load, prefix)


def _collection(cls: type, statement: Statement) -> Callable[[str | None], Executable]:
    """The query for one of a product's collections, read by a statement of its own."""
    return lambda prefix: _built(class_mapper(cls), (statement,), None, prefix)


_WAITING_QUERY = _collection(model.Backorder, sql.WAITING_LINES)
_HOLDS_QUERY = _collection(Hold, sql.ACTIVE_HOLDS)


@functools.cache
def _built(
    mapper: Mapper[Any], statements: tuple[Statement, ...], load: _Load | None, prefix: str | None
) -> Executable:
    """The ORM query for a load of products (or, without one, of one of a product's
    collections), built once per mapping: on PostgreSQL (``prefix`` not None) the
    prepared statements by name, after what a new connection needs first; elsewhere
    the last statement itself."""
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
    """What the rows fill in, for the ORM: the batches, and the lines, waiting line and
    holds the load reads."""
    batches = contains_eager(_mapped(model.Product, "batches"))
    if load.lines:
        batches = batches.contains_eager(_mapped(model.Batch, "_allocations"))
    options = [batches]
    if load.waiting:
        options.append(contains_eager(_mapped(model.Product, "backorders")))
    if load.holds:
        options.append(contains_eager(_mapped(model.Product, "holds")))
    return options


def _mapped(cls: type, name: str) -> QueryableAttribute[Any]:
    """The class-level attribute the classical mapping made, for use in queries
    (to mypy the model's attributes are plain values)."""
    attribute: QueryableAttribute[Any] = class_mapper(cls).attrs[name].class_attribute
    return attribute
