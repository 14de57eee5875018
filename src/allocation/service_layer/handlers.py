"""Command and event handlers: each is one use case, run inside its own Unit of Work.

Every handler takes the message and a fresh Unit of Work; bootstrap binds any
other dependency (notifications, the clock) by keyword. The read model and the outbox are
written by the Unit of Work's commit, in the same transaction as the change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from allocation.domain import commands, events, model
from allocation.domain.exceptions import (
    DuplicateBatch,
    HoldConflict,
    InvalidSku,
    OutOfStockError,
    UnknownBatch,
    UnknownHold,
    UnknownLine,
    UnknownOrder,
)
from allocation.domain.holds import HoldState
from allocation.service_layer.ports import AbstractNotifications
from allocation.service_layer.unit_of_work import AbstractUnitOfWork

logger = logging.getLogger(__name__)


def add_batch(cmd: commands.CreateBatch, uow: AbstractUnitOfWork) -> None:
    with uow:
        if uow.products.has_batch(cmd.ref):
            raise DuplicateBatch(cmd.ref)
        product = uow.products.get(cmd.sku)
        if product is None:
            product = model.Product(cmd.sku)
            uow.products.add(product)
        product.add_batch(model.Batch(cmd.ref, cmd.sku, cmd.qty, cmd.eta))
        uow.commit()


def allocate(cmd: commands.Allocate, uow: AbstractUnitOfWork) -> model.Allocation:
    """The allocation (or the backorder); raises OutOfStockError after recording
    OutOfStock when the line can neither be allocated nor wait."""
    line = model.OrderLine(cmd.orderid, cmd.sku, cmd.qty, accepted_at=datetime.now(UTC))
    with uow:
        product = uow.products.for_allocation(line.sku, line.orderid)
        if product is None:
            raise InvalidSku(line.sku)
        allocation = product.allocate(line, backorder=cmd.backorder)
        uow.commit()
    if allocation.batchref is None and not allocation.backordered:
        raise OutOfStockError(line.sku)
    return allocation


def cancel_line(cmd: commands.CancelLine, uow: AbstractUnitOfWork) -> model.Release:
    with uow:
        product = uow.products.for_cancellation(cmd.sku, cmd.orderid)
        if product is None:
            raise UnknownLine(cmd.orderid, cmd.sku)
        release = product.cancel(cmd.orderid)
        uow.commit()
    return release


def cancel_order(cmd: commands.CancelOrder, uow: AbstractUnitOfWork) -> list[model.Release]:
    """Releases every line of the order, in one transaction; products are locked in
    SKU order, so two cancellations of overlapping orders cannot deadlock."""
    with uow:
        skus = sorted(uow.products.skus_of_order(cmd.orderid))
        if not skus:
            raise UnknownOrder(cmd.orderid)
        releases = []
        for sku in skus:
            product = uow.products.for_cancellation(sku, cmd.orderid)
            if product is not None:
                releases.append(product.cancel(cmd.orderid))
        uow.commit()
    return releases


ChangeResult = Literal["applied", "duplicate", "stale"]


def change_batch_quantity(
    cmd: commands.ChangeBatchQuantity, uow: AbstractUnitOfWork
) -> ChangeResult:
    """Applies the change, unless its message id was applied before ("duplicate") or a
    change later in its producer's order was ("stale": recorded, not applied)."""
    with uow:
        if cmd.message_id is not None and uow.processed_messages.contains(cmd.message_id):
            logger.info("message %s was already applied; skipping it", cmd.message_id)
            return "duplicate"
        # Loading takes the product's lock: changes to one batch are checked in turn.
        product = uow.products.for_batch_change(cmd.ref)
        if product is None:
            raise UnknownBatch(cmd.ref)
        result: ChangeResult = "stale" if _is_stale(cmd, uow) else "applied"
        if result == "applied":
            product.change_batch_quantity(cmd.ref, cmd.qty)
            if cmd.position is not None:
                uow.change_positions.record(cmd.ref, cmd.position)
        if cmd.message_id is not None:
            uow.processed_messages.add(cmd.message_id)
        uow.commit()
    return result


def _is_stale(cmd: commands.ChangeBatchQuantity, uow: AbstractUnitOfWork) -> bool:
    if cmd.position is None:
        return False
    last = uow.change_positions.last(cmd.ref)
    if last is None or cmd.position.is_after(last):
        return False
    logger.info("stale change of %s (%s, after %s); not applied", cmd.ref, cmd.position, last)
    return True


Clock = Callable[[], datetime]


def place_hold(cmd: commands.PlaceHold, uow: AbstractUnitOfWork, *, clock: Clock) -> HoldState:
    """The hold, placed (or as it was, for a repeated placement); raises OutOfStockError
    after recording OutOfStock when no batch can take it whole."""
    now = clock()
    with uow:
        product = uow.products.for_new_hold(cmd.sku, cmd.holdid)
        if product is None:
            other = uow.products.sku_of_hold(cmd.holdid)
            if other is not None:
                raise HoldConflict(cmd.holdid, f"was placed for sku {other}")
            raise InvalidSku(cmd.sku)
        expires_at = now + timedelta(seconds=cmd.ttl_seconds)
        hold = product.place_hold(cmd.holdid, cmd.qty, expires_at, now)
        uow.commit()
    if hold is None:
        raise OutOfStockError(cmd.sku)
    return hold.seen_at(now)


def extend_hold(cmd: commands.ExtendHold, uow: AbstractUnitOfWork, *, clock: Clock) -> HoldState:
    now = clock()
    with uow:
        product = _product_of_hold(uow.products.for_hold(cmd.holdid), cmd.holdid)
        hold = product.extend_hold(cmd.holdid, now + timedelta(seconds=cmd.ttl_seconds), now)
        uow.commit()
    return hold.seen_at(now)


def release_hold(cmd: commands.ReleaseHold, uow: AbstractUnitOfWork, *, clock: Clock) -> HoldState:
    now = clock()
    with uow:
        product = _product_of_hold(uow.products.for_hold_release(cmd.holdid), cmd.holdid)
        hold = product.release_hold(cmd.holdid, now)
        uow.commit()
    return hold.seen_at(now)


def confirm_hold(
    cmd: commands.ConfirmHold, uow: AbstractUnitOfWork, *, clock: Clock
) -> model.Allocation:
    now = clock()
    with uow:
        loaded = uow.products.for_confirmation(cmd.holdid, cmd.orderid)
        product = _product_of_hold(loaded, cmd.holdid)
        allocation = product.confirm_hold(cmd.holdid, cmd.orderid, now)
        uow.commit()
    return allocation


def expire_holds(cmd: commands.ExpireHolds, uow: AbstractUnitOfWork, *, clock: Clock) -> int:
    """How many of the SKU's holds it expired (none when another process got there first)."""
    now = clock()
    with uow:
        product = uow.products.for_expiry(cmd.sku, now)
        expired = [] if product is None else product.expire_holds(now)
        uow.commit()
    return len(expired)


def _product_of_hold(product: model.Product | None, holdid: str) -> model.Product:
    if product is None:
        raise UnknownHold(holdid)
    return product


def send_out_of_stock_notification(
    event: events.OutOfStock, uow: AbstractUnitOfWork, *, notifications: AbstractNotifications
) -> None:
    notifications.send(
        f"Out of stock for {event.sku}",
        f"An order line for SKU {event.sku} could not be allocated: no batch has enough stock.",
    )
