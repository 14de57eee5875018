"""The Unit of Work port: one atomic change, and the events it is allowed to release."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from types import TracebackType

from allocation.domain import events
from allocation.service_layer.ports import AbstractAllocationsView, AbstractRepository


class AbstractUnitOfWork(abc.ABC):
    """Use once, as a context manager: leaving it without commit() rolls back.

    Events raised by the aggregates are released (collect_new_events) only after
    the commit that made them true succeeded; a rollback discards them.
    """

    products: AbstractRepository
    allocations_view: AbstractAllocationsView

    def __init__(self) -> None:
        self._committed_events: list[events.Event] = []

    def __enter__(self) -> AbstractUnitOfWork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.rollback()

    def commit(self) -> None:
        self._commit()
        for product in self.products.seen:
            self._committed_events.extend(product.events)
            product.events.clear()

    def rollback(self) -> None:
        self._rollback()
        if hasattr(self, "products"):
            for product in self.products.seen:
                product.events.clear()

    def collect_new_events(self) -> Iterator[events.Event]:
        while self._committed_events:
            yield self._committed_events.pop(0)

    @abc.abstractmethod
    def _commit(self) -> None:
        """Makes the change durable; raises ConcurrencyConflict if another change won."""

    @abc.abstractmethod
    def _rollback(self) -> None: ...
