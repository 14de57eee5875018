"""SQLAlchemy implementations of the repository and read-model ports."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, class_mapper, selectinload
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
        query = select(model.Product).filter_by(sku=sku)
        if orderid is not None:
            query = query.options(_lines_of_order(orderid))
        return self.session.scalars(query).first()

    def _get_by_batchref(self, ref: str) -> model.Product | None:
        query = (
            select(model.Product)
            .join(orm.batches, orm.batches.c.sku == orm.products.c.sku)
            .where(orm.batches.c.reference == ref)
            .options(_all_lines())
        )
        return self.session.scalars(query).first()

    def allocation_rows(self) -> set[AllocationRow]:
        query = select(
            orm.allocations.c.orderid, orm.allocations.c.sku, orm.batches.c.reference
        ).join(orm.batches, orm.batches.c.id == orm.allocations.c.batch_id)
        return {(row[0], row[1], row[2]) for row in self.session.execute(query)}


def _all_lines() -> ORMOption:
    """Every line of every batch: a batch that shrinks hands its lines to the others."""
    product_batches = class_mapper(model.Product).relationships["batches"].class_attribute
    batch_lines = class_mapper(model.Batch).relationships["_allocations"].class_attribute
    return selectinload(product_batches).selectinload(batch_lines)


def _lines_of_order(orderid: str) -> ORMOption:
    """Loads each batch's lines of this one order: the collection then counts as
    loaded, so the model's look at it reads no other order's lines."""
    product_batches = class_mapper(model.Product).relationships["batches"].class_attribute
    batch_lines = class_mapper(model.Batch).relationships["_allocations"].class_attribute
    return selectinload(product_batches).selectinload(
        batch_lines.and_(orm.allocations.c.orderid == orderid)
    )


class SqlAlchemyAllocationsView(AbstractAllocationsView):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        self.remove(orderid, sku)
        self.session.execute(
            insert(orm.allocations_view).values(orderid=orderid, sku=sku, batchref=batchref)
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
