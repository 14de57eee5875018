"""The read side (CQRS): answers queries from the denormalized allocations_view only."""

from __future__ import annotations

from allocation.domain.exceptions import DatabaseUnavailable
from allocation.service_layer.messagebus import UnitOfWorkFactory


def allocations(orderid: str, uow_factory: UnitOfWorkFactory) -> list[dict[str, str]]:
    """The order's allocations. Tried twice: a pooled connection the database dropped
    fails once and is replaced; a database that is really down fails both times."""
    try:
        return _allocations(orderid, uow_factory)
    except DatabaseUnavailable:
        return _allocations(orderid, uow_factory)


def _allocations(orderid: str, uow_factory: UnitOfWorkFactory) -> list[dict[str, str]]:
    with uow_factory() as uow:
        return uow.allocations_view.for_order(orderid)
