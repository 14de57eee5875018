"""The read models' write side (CQRS): rows written in the change's own transaction.

Used by the Unit of Work at commit; ``queries.py`` reads them.
"""

from __future__ import annotations

import functools
import json
from datetime import date

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from allocation.adapters.sql import orm
from allocation.adapters.sql.statements import WriteBatch, param, statement, upsert
from allocation.domain.availability import Availability, Slot
from allocation.service_layer.ports import (
    AbstractAllocationsView,
    AbstractAvailabilityView,
    AllocationRow,
)

_VIEW = orm.allocations_view
_ORDERID = param("orderid", _VIEW.c.orderid)
_SKU = param("sku", _VIEW.c.sku)
_BATCHREF = param("batchref", _VIEW.c.batchref)


VIEW_UPSERT = upsert(
    "upsert_allocation_view_row",
    _VIEW,
    keys=("orderid", "sku"),
    columns=("orderid", "sku", "batchref"),
)
VIEW_DELETE = statement(
    "delete_allocation_view_row",
    delete(_VIEW).where(_VIEW.c.orderid == _ORDERID, _VIEW.c.sku == _SKU),
)

_AVAILABILITY = orm.availability_view


# The columns of an availability row, in the order `decode` takes them.
AVAILABILITY_COLUMNS = ("sku", "version", "backordered", "slots", "held")
AVAILABILITY_UPSERT = upsert(
    "upsert_availability_view_row", _AVAILABILITY, keys=("sku",), columns=AVAILABILITY_COLUMNS
)


AVAILABILITY_DELETE = statement(
    "delete_availability_view_row",
    delete(_AVAILABILITY).where(_AVAILABILITY.c.sku == param("sku", _AVAILABILITY.c.sku)),
)


def encode_slots(slots: tuple[Slot, ...]) -> str:
    """[[eta or null, free units], …], as the view's ``slots`` column holds them."""
    return json.dumps([[s.eta.isoformat() if s.eta else None, s.available] for s in slots])


@functools.lru_cache(maxsize=4096)
def decode(sku: str, version: int, backordered: int, slots: str, held: int) -> Availability:
    """An availability row as the domain's value. A row is decoded once: the value is
    immutable, and a SKU's row changes only with its version."""
    decoded = tuple(
        Slot(date.fromisoformat(eta) if eta else None, int(units))
        for eta, units in json.loads(slots)
    )
    return Availability(sku, int(version), decoded, int(backordered), int(held))


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


class SqlAlchemyAvailabilityView(AbstractAvailabilityView):
    """Rows are queued on the Unit of Work's writes and sent with its commit."""

    def __init__(self, session: Session, writes: WriteBatch) -> None:
        self.session = session
        self._writes = writes

    def put(self, availability: Availability) -> None:
        self._writes.add(
            AVAILABILITY_UPSERT,
            {
                "sku": availability.sku,
                "version": availability.version,
                "backordered": availability.backordered,
                "slots": encode_slots(availability.slots),
                "held": availability.held,
            },
        )

    def remove(self, sku: str) -> None:
        self._writes.add(AVAILABILITY_DELETE, {"sku": sku})

    def all(self) -> dict[str, Availability]:
        columns = [_AVAILABILITY.c[n] for n in AVAILABILITY_COLUMNS]
        return {row[0]: decode(*row) for row in self.session.execute(select(*columns))}
