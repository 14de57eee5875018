"""The ledger of stock movements: rows added in the transaction of the change that made
them, never rewritten."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from allocation.adapters.sql import orm
from allocation.adapters.sql.statements import WriteBatch, columns_as_params, statement
from allocation.domain.movements import Movement
from allocation.service_layer.ports import AbstractMovements

_M = orm.stock_movements
_COLUMNS = (
    "sku",
    "seq",
    "at",
    "kind",
    "qty",
    "batchref",
    "version",
    "reason",
    "orderid",
    "holdid",
    "source",
)
INSERT_MOVEMENT = statement(
    "insert_stock_movement", insert(_M).values(**columns_as_params(_M, _COLUMNS)).inline()
)


class SqlAlchemyMovements(AbstractMovements):
    """Movements are queued on the Unit of Work's writes and sent with its commit."""

    def __init__(self, session: Session, writes: WriteBatch) -> None:
        self.session = session
        self._writes = writes

    def add(self, sku: str, movement: Movement, source: Mapping[str, Any]) -> None:
        self._writes.add(
            INSERT_MOVEMENT,
            {
                "sku": sku,
                "seq": movement.seq,
                "at": datetime.now(UTC),
                "kind": movement.kind,
                "qty": movement.qty,
                "batchref": movement.batchref,
                "version": movement.version,
                "reason": movement.reason,
                "orderid": movement.orderid,
                "holdid": movement.holdid,
                "source": json.dumps(dict(source), separators=(",", ":")),
            },
        )

    def sums(self, sku: str | None = None) -> dict[str, int]:
        query = select(_M.c.sku, func.sum(_M.c.qty)).group_by(_M.c.sku)
        if sku is not None:
            query = query.where(_M.c.sku == sku)
        return {row[0]: int(row[1]) for row in self.session.execute(query)}
