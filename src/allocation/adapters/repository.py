"""SQLAlchemy implementations of the repository and read-model ports."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import QueryableAttribute, Session, class_mapper, joinedload, selectinload
from sqlalchemy.orm.interfaces import ORMOption

from allocation.adapters import orm
from allocation.domain import model
from allocation.service_layer.ports import (
    AbstractAllocationsView,
    AbstractRepository,
    AllocationRow,
)


class SqlAlchemyRepository(AbstractRepository):
    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session

    def _add(self, product: model.Product) -> None:
        self.session.add(product)

    def _get(self, sku: str, orderid: str | None) -> model.Product | None:
        self._lock(orm.products.c.sku == sku)
        query = select(model.Product).filter_by(sku=sku)
        if orderid is not None:
            query = query.options(_lines_of_order(orderid))
        return self.session.scalars(query).unique().first()

    def _get_by_batchref(self, ref: str) -> model.Product | None:
        self._lock(
            orm.products.c.sku
            == select(orm.batches.c.sku).where(orm.batches.c.reference == ref).scalar_subquery()
        )
        query = (
            select(model.Product)
            .join(orm.batches, orm.batches.c.sku == orm.products.c.sku)
            .where(orm.batches.c.reference == ref)
            .options(_all_lines())
        )
        return self.session.scalars(query).first()

    def _lock(self, which: ColumnElement[bool]) -> None:
        """Products are read to be changed: on PostgreSQL, lock the product's row first,
        so a second writer of the same SKU waits instead of doing its work twice (SQLite
        locks the whole database on write). The lock is its own statement: the product
        is then read in a snapshot taken after the lock, batches and version alike. The
        version check on commit stays the guarantee."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(orm.products.c.sku).where(which).with_for_update())

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


def _lines_of_order(orderid: str) -> ORMOption:
    """The product, its batches and their lines of this one order in one query; the
    collections then count as loaded, so the model reads no other order's lines."""
    lines = _mapped(model.Batch, "_allocations")
    return joinedload(_mapped(model.Product, "batches")).joinedload(
        lines.and_(_mapped(model.OrderLine, "orderid") == orderid)
    )


def _mapped(cls: type, name: str) -> QueryableAttribute[Any]:
    """The class-level attribute the classical mapping made, for use in queries
    (to mypy the model's attributes are plain values)."""
    attribute: QueryableAttribute[Any] = class_mapper(cls).attrs[name].class_attribute
    return attribute


class SqlAlchemyAllocationsView(AbstractAllocationsView):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        view = orm.allocations_view
        dialect = self.session.get_bind().dialect.name
        upsert = postgresql.insert(view) if dialect == "postgresql" else sqlite.insert(view)
        self.session.execute(
            upsert.values(orderid=orderid, sku=sku, batchref=batchref).on_conflict_do_update(
                index_elements=[view.c.orderid, view.c.sku],
                set_={"batchref": upsert.excluded.batchref},
            )
        )

    def remove(self, orderid: str, sku: str) -> None:
        view = orm.allocations_view
        self.session.execute(delete(view).where(view.c.orderid == orderid, view.c.sku == sku))

    def for_order(self, orderid: str) -> list[dict[str, str]]:
        view = orm.allocations_view
        rows = self.session.execute(
            select(view.c.sku, view.c.batchref)
            .where(view.c.orderid == orderid)
            .order_by(view.c.sku)
        )
        return [{"sku": row.sku, "batchref": row.batchref} for row in rows]

    def all_rows(self) -> set[AllocationRow]:
        view = orm.allocations_view
        rows = self.session.execute(select(view.c.orderid, view.c.sku, view.c.batchref))
        return {(row[0], row[1], row[2]) for row in rows}
