"""The read side (CQRS): queries answered from the read models, never from an aggregate."""

from __future__ import annotations

from collections.abc import Sequence

from allocation.domain.availability import Availability
from allocation.service_layer.ports import AbstractReadModel, OrderLineState, WaitingLine


def allocations(orderid: str, read_model: AbstractReadModel) -> list[dict[str, str]]:
    """The order's allocations, ordered by SKU; empty when it has none."""
    return read_model.allocations_for_order(orderid)


def availability(skus: Sequence[str], read_model: AbstractReadModel) -> list[Availability]:
    """Each known SKU's availability, in the order asked; unknown SKUs left out."""
    return read_model.availability(skus)


def order(orderid: str, read_model: AbstractReadModel) -> list[OrderLineState]:
    """Every line of the order, allocated or waiting, ordered by SKU."""
    return read_model.order_lines(orderid)


def queue(sku: str, read_model: AbstractReadModel) -> list[WaitingLine] | None:
    """The SKU's waiting lines, oldest first; None for an unknown SKU."""
    if not read_model.availability([sku]):
        return None
    return read_model.waiting_lines(sku)
