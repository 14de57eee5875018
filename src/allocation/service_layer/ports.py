"""Ports: what the service layer needs from the outside world, implemented in adapters."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from allocation.domain import model


class AbstractRepository(abc.ABC):
    """Products by SKU or batch reference; remembers every product it handed out."""

    def __init__(self) -> None:
        self.seen: set[model.Product] = set()

    def add(self, product: model.Product) -> None:
        self._add(product)
        self.seen.add(product)

    def get(self, sku: str) -> model.Product | None:
        return self._track(self._get(sku))

    def get_by_batchref(self, ref: str) -> model.Product | None:
        return self._track(self._get_by_batchref(ref))

    def _track(self, product: model.Product | None) -> model.Product | None:
        if product is not None:
            self.seen.add(product)
        return product

    @abc.abstractmethod
    def _add(self, product: model.Product) -> None: ...

    @abc.abstractmethod
    def _get(self, sku: str) -> model.Product | None: ...

    @abc.abstractmethod
    def _get_by_batchref(self, ref: str) -> model.Product | None: ...


class AbstractAllocationsView(abc.ABC):
    """The denormalized read model: which batch each (order, SKU) is allocated to."""

    @abc.abstractmethod
    def add(self, orderid: str, sku: str, batchref: str) -> None:
        """Records the allocation, replacing any row for the same order and SKU."""

    @abc.abstractmethod
    def remove(self, orderid: str, sku: str) -> None: ...

    @abc.abstractmethod
    def for_order(self, orderid: str) -> list[dict[str, str]]:
        """The order's allocations as ``{"sku", "batchref"}`` dicts, ordered by SKU."""


class AbstractPublisher(abc.ABC):
    """Sends an event to the outside world on a named channel."""

    @abc.abstractmethod
    def publish(self, channel: str, payload: Mapping[str, Any]) -> None: ...


class AbstractNotifications(abc.ABC):
    """Tells a person that something needs attention."""

    @abc.abstractmethod
    def send(self, subject: str, body: str) -> None: ...
