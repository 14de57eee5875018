"""The read side (CQRS): queries answered from the denormalized read models only."""

from __future__ import annotations

from allocation.service_layer.ports import AbstractReadModel


def allocations(orderid: str, read_model: AbstractReadModel) -> list[dict[str, str]]:
    """The order's allocations, ordered by SKU; empty when it has none."""
    return read_model.allocations_for_order(orderid)
