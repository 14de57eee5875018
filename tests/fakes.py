"""In-memory fakes of the ports, for unit tests (no mocks of our own classes)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from allocation.domain import model
from allocation.domain.exceptions import ConcurrencyConflict
from allocation.service_layer.ports import (
    AbstractAllocationsView,
    AbstractNotifications,
    AbstractPublisher,
    AbstractRepository,
)
from allocation.service_layer.unit_of_work import AbstractUnitOfWork


@dataclass
class FakeStore:
    """What a fake database holds; shared by every Unit of Work made from one factory."""

    products: dict[str, model.Product] = field(default_factory=dict)
    view: dict[tuple[str, str], str] = field(default_factory=dict)
    commits: int = 0
    conflicts_to_raise: int = 0


class FakeRepository(AbstractRepository):
    def __init__(self, products: dict[str, model.Product]) -> None:
        super().__init__()
        self._products = products

    def _add(self, product: model.Product) -> None:
        self._products[product.sku] = product

    def _get(self, sku: str) -> model.Product | None:
        return self._products.get(sku)

    def _get_by_batchref(self, ref: str) -> model.Product | None:
        return next(
            (p for p in self._products.values() if p.batch(ref) is not None), None
        )


class FakeAllocationsView(AbstractAllocationsView):
    def __init__(self, rows: dict[tuple[str, str], str]) -> None:
        self._rows = rows

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        self._rows[(orderid, sku)] = batchref

    def remove(self, orderid: str, sku: str) -> None:
        self._rows.pop((orderid, sku), None)

    def for_order(self, orderid: str) -> list[dict[str, str]]:
        return [
            {"sku": sku, "batchref": ref}
            for (order, sku), ref in sorted(self._rows.items())
            if order == orderid
        ]


class FakeUnitOfWork(AbstractUnitOfWork):
    """Works on a copy of the store, written back on commit, so rollback really discards."""

    def __init__(self, store: FakeStore) -> None:
        super().__init__()
        self.store = store
        self._products = copy.deepcopy(store.products)
        for product in self._products.values():
            product.events = []  # as the ORM's load hook does: events are never stored
        self._view = dict(store.view)
        self.products = FakeRepository(self._products)
        self.allocations_view = FakeAllocationsView(self._view)

    def _commit(self) -> None:
        if self.store.conflicts_to_raise > 0:
            self.store.conflicts_to_raise -= 1
            raise ConcurrencyConflict("fake")
        self.store.products = copy.deepcopy(self._products)
        self.store.view = dict(self._view)
        self.store.commits += 1

    def _rollback(self) -> None:
        pass


class FakePublisher(AbstractPublisher):
    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []

    def publish(self, channel: str, payload: Mapping[str, Any]) -> None:
        self.published.append((channel, dict(payload)))

    def on(self, channel: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.published if name == channel]


class FakeNotifications(AbstractNotifications):
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, subject: str, body: str) -> None:
        self.sent.append((subject, body))
