"""The read side (CQRS): answers queries from the denormalized allocations_view only."""

from __future__ import annotations

from allocation.service_layer.unit_of_work import AbstractUnitOfWork


def allocations(orderid: str, uow: AbstractUnitOfWork) -> list[dict[str, str]]:
    with uow:
        return uow.allocations_view.for_order(orderid)
