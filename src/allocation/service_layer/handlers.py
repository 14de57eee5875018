"""Command and event handlers: each is one use case, run inside its own Unit of Work.

Every handler takes the message and a fresh Unit of Work; bootstrap binds any
other dependency (publisher, notifications) by keyword.
"""

from __future__ import annotations

import logging

from allocation.domain import commands, events, model
from allocation.domain.exceptions import DuplicateBatch, InvalidSku, OutOfStockError, UnknownBatch
from allocation.service_layer.ports import AbstractNotifications, AbstractPublisher
from allocation.service_layer.unit_of_work import AbstractUnitOfWork

logger = logging.getLogger(__name__)

CHANNELS: dict[type[events.Event], str] = {
    events.Allocated: "line_allocated",
    events.Deallocated: "line_deallocated",
    events.OutOfStock: "out_of_stock",
}


def add_batch(cmd: commands.CreateBatch, uow: AbstractUnitOfWork) -> None:
    with uow:
        if uow.products.get_by_batchref(cmd.ref) is not None:
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
        product = uow.products.get(line.sku)
        if product is None:
            raise InvalidSku(line.sku)
        batchref = product.allocate(line)
        uow.commit()
    if batchref is None:
        raise OutOfStockError(line.sku)
    return batchref


def change_batch_quantity(cmd: commands.ChangeBatchQuantity, uow: AbstractUnitOfWork) -> None:
    with uow:
        product = uow.products.get_by_batchref(cmd.ref)
        if product is None:
            raise UnknownBatch(cmd.ref)
        product.change_batch_quantity(cmd.ref, cmd.qty)
        uow.commit()


def reallocate(event: events.Deallocated, uow: AbstractUnitOfWork) -> None:
    """A line that lost its batch goes to another batch with room, or raises OutOfStock."""
    with uow:
        product = uow.products.get(event.sku)
        if product is None:
            raise InvalidSku(event.sku)
        product.allocate(model.OrderLine(event.orderid, event.sku, event.qty))
        uow.commit()


def add_allocation_to_read_model(event: events.Allocated, uow: AbstractUnitOfWork) -> None:
    with uow:
        uow.allocations_view.add(event.orderid, event.sku, event.batchref)
        uow.commit()


def remove_allocation_from_read_model(event: events.Deallocated, uow: AbstractUnitOfWork) -> None:
    with uow:
        uow.allocations_view.remove(event.orderid, event.sku)
        uow.commit()


def publish_event(
    event: events.Event, uow: AbstractUnitOfWork, *, publisher: AbstractPublisher
) -> None:
    publisher.publish(CHANNELS[type(event)], event.to_dict())


def send_out_of_stock_notification(
    event: events.OutOfStock, uow: AbstractUnitOfWork, *, notifications: AbstractNotifications
) -> None:
    notifications.send(
        f"Out of stock for {event.sku}",
        f"An order line for SKU {event.sku} could not be allocated: no batch has enough stock.",
    )
