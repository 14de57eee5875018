"""SQLAlchemy implementations of the repository and read-model ports."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Insert, Select, bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import (
    Mapper,
    QueryableAttribute,
    Session,
    class_mapper,
    joinedload,
    selectinload,
)
from sqlalchemy.orm.interfaces import ORMOption

from allocation.adapters import database, orm
from allocation.domain import model
from allocation.service_layer.ports import (
    AbstractAllocationsView,
    AbstractRepository,
    AllocationRow,
)

# Hot statements are built once; each execution only binds its values.
_LOCK_BY_SKU = (
    select(orm.products.c.sku).where(orm.products.c.sku == bindparam("sku")).with_for_update()
)
_LOCK_BY_BATCHREF = (
    select(orm.products.c.sku)
    .where(
        orm.products.c.sku
        == select(orm.batches.c.sku)
        .where(orm.batches.c.reference == bindparam("ref"))
        .scalar_subquery()
    )
    .with_for_update()
)
_VIEW = orm.allocations_view
_VIEW_FOR_ORDER = (
    select(_VIEW.c.sku, _VIEW.c.batchref)
    .where(_VIEW.c.orderid == bindparam("orderid"))
    .order_by(_VIEW.c.sku)
)
_VIEW_DELETE = delete(_VIEW).where(
    _VIEW.c.orderid == bindparam("orderid"), _VIEW.c.sku == bindparam("sku")
)


@functools.cache
def _view_upsert(on_postgresql: bool) -> Insert:
    """INSERT … ON CONFLICT DO UPDATE, which both PostgreSQL and SQLite speak."""
    insert = postgresql.insert(_VIEW) if on_postgresql else sqlite.insert(_VIEW)
    return insert.on_conflict_do_update(
        index_elements=[_VIEW.c.orderid, _VIEW.c.sku],
        set_={"batchref": insert.excluded.batchref},
    )


class SqlAlchemyRepository(AbstractRepository):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    def _add(self, product: model.Product) -> None:
        self.session.add(product)

    def _get(self, sku: str, orderid: str | None) -> model.Product | None:
        self._lock(_LOCK_BY_SKU, {"sku": sku})
        if orderid is None:
            return self.session.scalars(select(model.Product).filter_by(sku=sku)).first()
        products = self.session.scalars(
            _product_with_lines_of_order(), {"sku": sku, "orderid": orderid}
        )
        return products.unique().first()

    def _get_by_batchref(self, ref: str) -> model.Product | None:
        self._lock(_LOCK_BY_BATCHREF, {"ref": ref})
        query = (
            select(model.Product)
            .join(orm.batches, orm.batches.c.sku == orm.products.c.sku)
            .where(orm.batches.c.reference == ref)
            .options(_all_lines())
        )
        return self.session.scalars(query).first()

    def _lock(self, statement: Select[tuple[str]], params: dict[str, str]) -> None:
        """Products are read to be changed: on PostgreSQL, lock the product's row first,
        so a second writer of the same SKU waits instead of doing its work twice (SQLite
        locks the whole database on write). The lock is its own statement: the product
        is then read in a snapshot taken after the lock, batches and version alike. The
        version check on commit stays the guarantee."""
        if database.is_postgresql(self.session):
            self.session.connection().execute(statement, params)

    def allocation_rows(self) -> set[AllocationRow]:
        query = select(
            orm.allocations.c.orderid, orm.allocations.c.sku, orm.batches.c.reference
        ).join(orm.batches, orm.batches.c.id == orm.allocations.c.batch_id)
        return {(row[0], row[1], row[2]) for row in self.session.execute(query)}


def _all_lines() -> ORMOption:
    """Every line of every batch: a batch that shrinks hands its lines to the others."""
    return selectinload(_mapped(model.Product, "batches")).selectinload(
        _mapped(model.Batch, "_allocations")
    )


def _product_with_lines_of_order() -> Select[tuple[model.Product]]:
    """The product, its batches and their lines of one order (bound as ``orderid``)
    in one query; the collections then count as loaded, so the model reads no other
    order's lines. Built once per mapping: the allocate path only binds values."""
    mapper = class_mapper(model.Product)
    query = _BUILT.get(mapper)
    if query is None:
        lines = _mapped(model.Batch, "_allocations")
        query = (
            select(model.Product)
            .where(_mapped(model.Product, "sku") == bindparam("sku"))
            .options(
                joinedload(_mapped(model.Product, "batches")).joinedload(
                    lines.and_(_mapped(model.OrderLine, "orderid") == bindparam("orderid"))
                )
            )
        )
        _BUILT[mapper] = query
    return query


# Queries of mapped classes exist only once the classes are mapped (start_mappers).
_BUILT: dict[Mapper[Any], Select[tuple[model.Product]]] = {}


def _mapped(cls: type, name: str) -> QueryableAttribute[Any]:
    """The class-level attribute the classical mapping made, for use in queries
    (to mypy the model's attributes are plain values)."""
    attribute: QueryableAttribute[Any] = class_mapper(cls).attrs[name].class_attribute
    return attribute


class SqlAlchemyAllocationsView(AbstractAllocationsView):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        upsert = _view_upsert(database.is_postgresql(self.session))
        self.session.connection().execute(
            upsert, {"orderid": orderid, "sku": sku, "batchref": batchref}
        )

    def remove(self, orderid: str, sku: str) -> None:
        self.session.connection().execute(_VIEW_DELETE, {"orderid": orderid, "sku": sku})

    def for_order(self, orderid: str) -> list[dict[str, str]]:
        rows = self.session.connection().execute(_VIEW_FOR_ORDER, {"orderid": orderid})
        return [{"sku": sku, "batchref": batchref} for sku, batchref in rows]

    def all_rows(self) -> set[AllocationRow]:
        view = orm.allocations_view
        rows = self.session.execute(select(view.c.orderid, view.c.sku, view.c.batchref))
        return {(row[0], row[1], row[2]) for row in rows}
