"""Ports: what the service layer needs from the outside world, implemented in adapters."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from allocation.domain import model
from allocation.service_layer.messages import OutboxMessage

AllocationRow = tuple[str, str, str]
"""(orderid, sku, batchref)"""


class AbstractRepository(abc.ABC):
    """Products by SKU or batch reference; remembers every product it handed out."""

    def __init__(self) -> None:
        self.seen: set[model.Product] = set()

    def add(self, product: model.Product) -> None:
        self._add(product)
        self.seen.add(product)

    def get(self, sku: str, orderid: str | None = None) -> model.Product | None:
        """The product; given an order id, its batches hold that order's lines, and
        other orders' lines need not be in memory (the allocate path needs no more)."""
        return self._track(self._get(sku, orderid))

    def get_by_batchref(self, ref: str) -> model.Product | None:
        return self._track(self._get_by_batchref(ref))

    def _track(self, product: model.Product | None) -> model.Product | None:
        if product is not None:
            self.seen.add(product)
        return product

    @abc.abstractmethod
    def _add(self, product: model.Product) -> None: ...

    @abc.abstractmethod
    def _get(self, sku: str, orderid: str | None) -> model.Product | None: ...

    @abc.abstractmethod
    def _get_by_batchref(self, ref: str) -> model.Product | None: ...

    @abc.abstractmethod
    def allocation_rows(self) -> set[AllocationRow]:
        """Every current allocation in the write model, for rebuilding the read model."""


class AbstractAllocationsView(abc.ABC):
    """The write side of the denormalized read model: which batch each (order, SKU) is
    allocated to. Written through the Unit of Work, in the change's own transaction."""

    @abc.abstractmethod
    def add(self, orderid: str, sku: str, batchref: str) -> None:
        """Records the allocation, replacing any row for the same order and SKU."""

    @abc.abstractmethod
    def remove(self, orderid: str, sku: str) -> None: ...

    @abc.abstractmethod
    def all_rows(self) -> set[AllocationRow]: ...


class AbstractReadModel(abc.ABC):
    """The query side (CQRS): answers from the read models only, never from an aggregate,
    and outside any Unit of Work. Sees every change committed before the call."""

    @abc.abstractmethod
    def allocations_for_order(self, orderid: str) -> list[dict[str, str]]:
        """The order's allocations as ``{"sku", "batchref"}`` dicts, ordered by SKU."""


@dataclass(frozen=True)
class Backlog:
    unsent: int
    oldest: datetime | None


class AbstractOutbox(abc.ABC):
    """Messages written in the same transaction as the change that caused them."""

    @abc.abstractmethod
    def add(self, message: OutboxMessage) -> None: ...

    @abc.abstractmethod
    def pending(self, limit: int) -> list[OutboxMessage]:
        """The oldest unsent messages in commit order; none while another relay holds them."""

    @abc.abstractmethod
    def mark_sent(self, ids: Sequence[int]) -> None: ...

    @abc.abstractmethod
    def prune(self, sent_before: datetime) -> int:
        """Deletes messages sent before the given time; returns how many."""

    @abc.abstractmethod
    def backlog(self) -> Backlog: ...


class AbstractProcessedMessages(abc.ABC):
    """Ids of inbound messages already applied, recorded in the transaction that applied them."""

    @abc.abstractmethod
    def contains(self, message_id: str) -> bool: ...

    @abc.abstractmethod
    def add(self, message_id: str) -> None: ...


@dataclass(frozen=True)
class DeadLetter:
    id: int | None
    source: str
    payload: str
    error: str
    message_id: str | None
    created_at: datetime
    redriven_at: datetime | None = None


class AbstractDeadLetters(abc.ABC):
    """Inbound messages that could not be applied, kept with the reason."""

    @abc.abstractmethod
    def add(self, letter: DeadLetter) -> None: ...

    @abc.abstractmethod
    def list(self, include_redriven: bool = False) -> Sequence[DeadLetter]: ...

    @abc.abstractmethod
    def get(self, letter_id: int) -> DeadLetter | None: ...

    @abc.abstractmethod
    def mark_redriven(self, letter_id: int, at: datetime) -> None: ...


class AbstractPublisher(abc.ABC):
    """Sends an event to the outside world on a named channel."""

    @abc.abstractmethod
    def publish(self, channel: str, payload: Mapping[str, Any]) -> None: ...

    def publish_batch(self, messages: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Publishes in order; adapters may send them in one round trip."""
        for channel, payload in messages:
            self.publish(channel, payload)


class AbstractNotifications(abc.ABC):
    """Tells a person that something needs attention."""

    @abc.abstractmethod
    def send(self, subject: str, body: str) -> None: ...
