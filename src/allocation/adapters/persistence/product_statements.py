"""The statements that read and write products: prepared once per connection (statements.py).

Reads lock the product's row first, then read it in a snapshot taken after the
lock. Each read returns one row per batch (and per loaded line); backorders and
holds, which would multiply the rows, come from statements of their own, except
the one line an order may have waiting and the one hold a request names, which
are joined.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, insert, literal_column, select, update

from allocation.adapters.sql import orm
from allocation.adapters.sql.statements import columns_as_params, param, statement

_P, _B, _A, _W = orm.products, orm.batches, orm.allocations, orm.backorders
_H = orm.holds

PRODUCT_COLUMNS = [_P.c.sku, _P.c.version_number, _P.c.backordered_quantity, _P.c.movement_seq]
BATCH_COLUMNS = [
    _B.c.id,
    _B.c.reference,
    _B.c.sku,
    _B.c.purchased_quantity,
    _B.c.allocated_quantity,
    _B.c.held_quantity,
    _B.c.eta,
]
LINE_COLUMNS = [_A.c.id, _A.c.batch_id, _A.c.orderid, _A.c.sku, _A.c.qty, _A.c.accepted_at]
WAITING_COLUMNS = [_W.c.id, _W.c.orderid, _W.c.sku, _W.c.qty, _W.c.since]
HOLD_COLUMNS = [
    _H.c.holdid,
    _H.c.sku,
    _H.c.qty,
    _H.c.batchref,
    _H.c.status,
    _H.c.expires_at,
    _H.c.placed_at,
    _H.c.orderid,
]

_SKU = _P.c.sku == param("sku", _P.c.sku)
_SKU_OF_BATCH = (
    _P.c.sku
    == select(_B.c.sku).where(_B.c.reference == param("ref", _B.c.reference)).scalar_subquery()
)
_ORDER = param("orderid", _A.c.orderid)
_HOLDID = param("holdid", _H.c.holdid)
_ACTIVE = _H.c.status == literal_column("'active'")
# The hold looked up by id on its own (an alias: the rows may join holds too).
_NAMED = _H.alias("named_hold")
_SKU_OF_HOLD = _P.c.sku == select(_NAMED.c.sku).where(_NAMED.c.holdid == _HOLDID).scalar_subquery()

LOCK_BY_SKU = statement("lock_product_by_sku", select(_P.c.sku).where(_SKU).with_for_update())
LOCK_BY_BATCHREF = statement(
    "lock_product_by_batchref", select(_P.c.sku).where(_SKU_OF_BATCH).with_for_update()
)
LOCK_BY_HOLDID = statement(
    "lock_product_by_holdid", select(_P.c.sku).where(_SKU_OF_HOLD).with_for_update()
)


def _rows(lines: Any | None, waiting: Any | None = None, holds: Any | None = None) -> Select[Any]:
    """The product and its batches, the lines that meet ``lines``, the waiting lines
    that meet ``waiting`` and the holds that meet ``holds`` (none where None)."""
    joined = _P.outerjoin(_B, _B.c.sku == _P.c.sku)
    columns = [*PRODUCT_COLUMNS, *BATCH_COLUMNS]
    if lines is not None:
        joined = joined.outerjoin(_A, lines)
        columns += LINE_COLUMNS
    if waiting is not None:
        joined = joined.outerjoin(_W, waiting)
        columns += WAITING_COLUMNS
    if holds is not None:
        joined = joined.outerjoin(_H, holds)
        columns += HOLD_COLUMNS
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
ACTIVE_HOLDS = statement(
    "active_holds_of_product",
    select(*HOLD_COLUMNS)
    .where(_H.c.sku == param("sku", _H.c.sku), _ACTIVE)
    .order_by(_H.c.placed_at),
)

# -- holds ------------------------------------------------------------------------------------

_THE_HOLD = and_(_H.c.sku == _P.c.sku, _H.c.holdid == _HOLDID)
_HOLD_ELSEWHERE = exists().where(_NAMED.c.holdid == _HOLDID, _NAMED.c.sku != _P.c.sku)
_DUE = and_(_H.c.sku == _P.c.sku, _ACTIVE, _H.c.expires_at <= param("now", _H.c.expires_at))

PRODUCT_FOR_NEW_HOLD = statement(
    "product_for_new_hold", _rows(None, None, _THE_HOLD).where(_SKU, ~_HOLD_ELSEWHERE)
)
PRODUCT_WITH_HOLD = statement("product_with_hold", _rows(None, None, _THE_HOLD).where(_SKU_OF_HOLD))
PRODUCT_FOR_CONFIRMATION = statement(
    "product_for_hold_confirmation",
    _rows(_LINE_OF_ORDER, _WAITING_OF_ORDER, _THE_HOLD).where(_SKU_OF_HOLD),
)
PRODUCT_WITH_DUE_HOLDS = statement("product_with_due_holds", _rows(None, None, _DUE).where(_SKU))
SKU_OF_HOLD = statement("sku_of_hold", select(_H.c.sku).where(_H.c.holdid == _HOLDID))
SKUS_WITH_DUE_HOLDS = statement(
    "skus_with_due_holds",
    select(_H.c.sku)
    .where(_ACTIVE, _H.c.expires_at <= param("now", _H.c.expires_at))
    .group_by(_H.c.sku)
    .limit(param("limit", _H.c.qty)),
)

# -- writes -----------------------------------------------------------------------------------

INSERT_PRODUCT = statement(
    "insert_product",
    insert(_P)
    .values(
        sku=param("sku", _P.c.sku),
        version_number=param("version", _P.c.version_number),
        backordered_quantity=param("backordered", _P.c.backordered_quantity),
        movement_seq=param("movement_seq", _P.c.movement_seq),
    )
    .inline(),
)
_STALE_OR_BUMPED = (
    update(_P)
    .where(_SKU, _P.c.version_number == param("read_version", _P.c.version_number))
    .values(
        version_number=param("version", _P.c.version_number),
        backordered_quantity=param("backordered", _P.c.backordered_quantity),
        movement_seq=param("movement_seq", _P.c.movement_seq),
    )
)
# On PostgreSQL a stale version raises (serialization_failure, through the function
# migration 0008 made), so that the COMMIT sent behind it never runs; elsewhere the
# Unit of Work checks the row count.
EXPECT_ONE_ROW = "allocation_expect_one_row"
_BUMPED = _STALE_OR_BUMPED.returning(_P.c.sku).cte("bumped")
BUMP_VERSION = statement(
    "bump_product_version",
    select(
        getattr(func, EXPECT_ONE_ROW)(
            select(func.count()).select_from(_BUMPED).scalar_subquery(),
            literal_column("'product version'"),
        )
    ),
    elsewhere=_STALE_OR_BUMPED,
)
INSERT_BATCH = statement(
    "insert_batch",
    insert(_B)
    .values(
        reference=param("ref", _B.c.reference),
        sku=param("sku", _B.c.sku),
        purchased_quantity=param("purchased", _B.c.purchased_quantity),
        allocated_quantity=param("allocated", _B.c.allocated_quantity),
        held_quantity=param("held", _B.c.held_quantity),
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
        held_quantity=param("held", _B.c.held_quantity),
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
_HOLD_PARAMS = columns_as_params(
    _H, ("holdid", "sku", "qty", "batchref", "status", "expires_at", "placed_at", "orderid")
)
INSERT_HOLD = statement("insert_hold", insert(_H).values(**_HOLD_PARAMS).inline())
UPDATE_HOLD = statement(
    "update_hold",
    update(_H)
    .where(_H.c.holdid == _HOLD_PARAMS["holdid"])
    .values(
        status=_HOLD_PARAMS["status"],
        batchref=_HOLD_PARAMS["batchref"],
        expires_at=_HOLD_PARAMS["expires_at"],
        orderid=_HOLD_PARAMS["orderid"],
    ),
)
