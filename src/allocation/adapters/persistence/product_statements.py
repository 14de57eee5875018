"""The statements that read and write products: prepared once per connection (statements.py).

Reads lock the product's row first, then read it in a snapshot taken after the
lock. Each read returns one row per batch (and per loaded line); backorders,
which would multiply the rows, come from a statement of their own, except the
one line an order may have waiting, which the allocate path joins.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, delete, insert, select, update

from allocation.adapters.sql import orm
from allocation.adapters.sql.statements import param, statement

_P, _B, _A, _W = orm.products, orm.batches, orm.allocations, orm.backorders

PRODUCT_COLUMNS = [_P.c.sku, _P.c.version_number, _P.c.backordered_quantity]
BATCH_COLUMNS = [
    _B.c.id,
    _B.c.reference,
    _B.c.sku,
    _B.c.purchased_quantity,
    _B.c.allocated_quantity,
    _B.c.eta,
]
LINE_COLUMNS = [_A.c.id, _A.c.batch_id, _A.c.orderid, _A.c.sku, _A.c.qty, _A.c.accepted_at]
WAITING_COLUMNS = [_W.c.id, _W.c.orderid, _W.c.sku, _W.c.qty, _W.c.since]

_SKU = _P.c.sku == param("sku", _P.c.sku)
_SKU_OF_BATCH = (
    _P.c.sku
    == select(_B.c.sku).where(_B.c.reference == param("ref", _B.c.reference)).scalar_subquery()
)
_ORDER = param("orderid", _A.c.orderid)

LOCK_BY_SKU = statement("lock_product_by_sku", select(_P.c.sku).where(_SKU).with_for_update())
LOCK_BY_BATCHREF = statement(
    "lock_product_by_batchref", select(_P.c.sku).where(_SKU_OF_BATCH).with_for_update()
)


def _rows(lines: Any | None, waiting: Any | None = None) -> Select[Any]:
    """The product and its batches, the lines that meet ``lines`` and the waiting lines
    that meet ``waiting`` (none where None), one row each."""
    joined = _P.outerjoin(_B, _B.c.sku == _P.c.sku)
    columns = [*PRODUCT_COLUMNS, *BATCH_COLUMNS]
    if lines is not None:
        joined = joined.outerjoin(_A, lines)
        columns += LINE_COLUMNS
    if waiting is not None:
        joined = joined.outerjoin(_W, waiting)
        columns += WAITING_COLUMNS
    return select(*columns).select_from(joined).order_by(_B.c.id)


_LINE_OF_BATCH = _A.c.batch_id == _B.c.id
_LINE_OF_ORDER = and_(_LINE_OF_BATCH, _A.c.orderid == _ORDER)
_WAITING_OF_ORDER = and_(_W.c.sku == _P.c.sku, _W.c.orderid == _ORDER)

PRODUCT_WITH_BATCHES = statement("product_with_batches", _rows(None).where(_SKU))
PRODUCT_FOR_ALLOCATION = statement(
    "product_for_allocation", _rows(_LINE_OF_ORDER, _WAITING_OF_ORDER).where(_SKU)
)
PRODUCT_WITH_LINES_OF_ORDER = statement(
    "product_with_lines_of_order", _rows(_LINE_OF_ORDER).where(_SKU)
)
PRODUCT_WITH_ALL_LINES = statement(
    "product_with_all_lines_by_batchref", _rows(_LINE_OF_BATCH).where(_SKU_OF_BATCH)
)
WAITING_LINES = statement(
    "waiting_lines_of_product",
    select(*WAITING_COLUMNS)
    .where(_W.c.sku == param("sku", _W.c.sku))
    .order_by(_W.c.since, _W.c.id),
)

# -- writes -----------------------------------------------------------------------------------

INSERT_PRODUCT = statement(
    "insert_product",
    insert(_P)
    .values(
        sku=param("sku", _P.c.sku),
        version_number=param("version", _P.c.version_number),
        backordered_quantity=param("backordered", _P.c.backordered_quantity),
    )
    .inline(),
)
BUMP_VERSION = statement(
    "bump_product_version",
    update(_P)
    .where(_SKU, _P.c.version_number == param("read_version", _P.c.version_number))
    .values(
        version_number=param("version", _P.c.version_number),
        backordered_quantity=param("backordered", _P.c.backordered_quantity),
    ),
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
        ["batch_id", "orderid", "sku", "qty", "accepted_at"],
        select(
            _B.c.id,
            param("orderid", _A.c.orderid),
            param("sku", _A.c.sku),
            param("qty", _A.c.qty),
            param("accepted_at", _A.c.accepted_at),
        ).where(_B.c.reference == param("ref", _B.c.reference)),
    )
    .inline(),
)
DELETE_LINE = statement(
    "delete_order_line",
    delete(_A).where(_A.c.orderid == _ORDER, _A.c.sku == param("sku", _A.c.sku)),
)
INSERT_WAITING = statement(
    "insert_waiting_line",
    insert(_W)
    .values(
        orderid=param("orderid", _W.c.orderid),
        sku=param("sku", _W.c.sku),
        qty=param("qty", _W.c.qty),
        since=param("since", _W.c.since),
    )
    .inline(),
)
DELETE_WAITING = statement(
    "delete_waiting_line",
    delete(_W).where(
        _W.c.orderid == param("orderid", _W.c.orderid), _W.c.sku == param("sku", _W.c.sku)
    ),
)
