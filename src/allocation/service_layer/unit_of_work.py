"""The Unit of Work port: one atomic change, and the events it is allowed to release."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any

from allocation.domain import events
from allocation.service_layer.messages import to_message
from allocation.service_layer.ports import (
    AbstractAllocationsView,
    AbstractAvailabilityView,
    AbstractChangePositions,
    AbstractDeadLetters,
    AbstractMovements,
    AbstractOutbox,
    AbstractProcessedMessages,
    AbstractRepository,
)
from allocation.service_layer.product_changes import ProductChanges


class AbstractUnitOfWork(abc.ABC):
    """Use once, as a context manager: leaving it without commit() rolls back.

    Writes through the ports may be held back and sent at commit: read what you
    need before you change it. Committing also records, in the same transaction,
    what the aggregates' changes imply outside them: the read models' rows, the
    outbox messages and the stock movements, attributed to ``source`` (what
    caused the change: a request, a message, the expiry of holds).
    The events are released (collect_new_events) only after that commit
    succeeded; a rollback discards them.
    """

    products: AbstractRepository
    allocations_view: AbstractAllocationsView
    availability_view: AbstractAvailabilityView
    outbox: AbstractOutbox
    processed_messages: AbstractProcessedMessages
    change_positions: AbstractChangePositions
    dead_letters: AbstractDeadLetters
    movements: AbstractMovements

    def __init__(self) -> None:
        self._committed_events: list[events.Event] = []
        self.source: Mapping[str, Any] = {}

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
        new_events = [event for product in self.products.seen for event in product.events]
        for event in new_events:
            self._record(event)
        for product in self.products.seen:
            for movement in product.movements:
                self.movements.add(product.sku, movement, self.source)
        changes = [change for change in self.products.changes() if change.rows_changed]
        for change in changes:
            self.availability_view.put(change.product.availability())
        self._commit(changes)
        for product in self.products.seen:
            product.events.clear()
            product.movements.clear()
        self._committed_events.extend(new_events)

    def _record(self, event: events.Event) -> None:
        if isinstance(event, events.Allocated):
            self.allocations_view.add(event.orderid, event.sku, event.batchref)
        elif isinstance(event, events.Deallocated):
            self.allocations_view.remove(event.orderid, event.sku)
        message = to_message(event)
        if message is not None:
            self.outbox.add(message)

    def rollback(self) -> None:
        self._rollback()
        for product in self.products.seen:
            product.events.clear()
            product.movements.clear()

    def collect_new_events(self) -> Iterator[events.Event]:
        while self._committed_events:
            yield self._committed_events.pop(0)

    @abc.abstractmethod
    def _commit(self, changes: Sequence[ProductChanges]) -> None:
        """Makes the change durable, the changed products' rows (``changes``, only
        those whose rows changed) with the rest; raises ConcurrencyConflict if
        another change won."""

    @abc.abstractmethod
    def _rollback(self) -> None: ...
