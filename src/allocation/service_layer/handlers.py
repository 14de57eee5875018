"""Command and event handlers: each is one use case, run inside its own Unit of Work.

Every handler takes the message and a fresh Unit of Work; bootstrap binds any
other dependency (notifications) by keyword. The read model and the outbox are
written by the Unit of Work's commit, in the same transaction as the change.
"""

from __future__ import annotations

import logging
from typing import Literal

from allocation.domain import commands, events, model
from allocation.domain.exceptions import DuplicateBatch, InvalidSku, OutOfStockError, UnknownBatch
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


def allocate(cmd: commands.Allocate, uow: AbstractUnitOfWork) -> str:
    """Returns the batch reference; raises OutOfStockError after recording OutOfStock."""
    line = model.OrderLine(cmd.orderid, cmd.sku, cmd.qty)
    with uow:
        product = uow.products.for_allocation(line.sku, line.orderid)
        if product is None:
            raise InvalidSku(line.sku)
        batchref = product.allocate(line)
        uow.commit()
    if batchref is None:
        raise OutOfStockError(line.sku)
    return batchref


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


def send_out_of_stock_notification(
    event: events.OutOfStock, uow: AbstractUnitOfWork, *, notifications: AbstractNotifications
) -> None:
    notifications.send(
        f"Out of stock for {event.sku}",
        f"An order line for SKU {event.sku} could not be allocated: no batch has enough stock.",
    )
