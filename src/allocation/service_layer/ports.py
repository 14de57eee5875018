"""Ports: what the service layer needs from the outside world, implemented in adapters."""

from __future__ import annotations

import abc
from collections.abc import KeysView, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from allocation.domain import commands, model
from allocation.domain.availability import Availability
from allocation.domain.holds import HoldState
from allocation.domain.movements import Movement
from allocation.service_layer.messages import OutboxMessage
from allocation.service_layer.product_changes import (
    ProductAsRead,
    ProductChanges,
    changes_since,
)

AllocationRow = tuple[str, str, str]
"""(orderid, sku, batchref)"""


class AbstractRepository(abc.ABC):
    """Products by SKU or batch reference, each load with a stated part of the order lines.

    What a load leaves out is not in memory at all: touching the lines of a
    batch whose lines were not loaded raises, so no code can decide on lines
    it never saw. The repository remembers what it handed out and what it
    read, so that a commit writes only what changed (``changes``).
    """

    def __init__(self) -> None:
        # Every product handed out (or added), in that order, and how it was read
        # (None: added).
        self._as_read: dict[model.Product, ProductAsRead | None] = {}

    @property
    def seen(self) -> KeysView[model.Product]:
        """The products handed out or added in this Unit of Work, in that order."""
        return self._as_read.keys()

    def add(self, product: model.Product) -> None:
        """A new product, stored at commit."""
        self._add(product)
        self._as_read[product] = None

    def get(self, sku: str) -> model.Product | None:
        """The product, its batches with their allocated quantities and every waiting
        line, but no allocated lines. Enough to add a batch (which may fill backorders)."""
        return self._track(self._get(sku), with_lines=False)

    def for_allocation(self, sku: str, orderid: str) -> model.Product | None:
        """The product and its batches, holding only order ``orderid``'s line, allocated
        or waiting: enough for Product.allocate, which looks at no other order's lines
        (the batches' allocated quantities count them all, ``backordered_quantity``
        every waiting unit)."""
        return self._track(self._for_allocation(sku, orderid), with_lines=True)

    def for_batch_change(self, ref: str) -> model.Product | None:
        """The product that has batch ``ref``, with every line of every batch, every
        waiting line and every active hold: a batch that shrinks hands its holds and
        lines to the others or the queue."""
        return self._track(self._for_batch_change(ref), with_lines=True)

    def for_cancellation(self, sku: str, orderid: str) -> model.Product | None:
        """The product, its batches with order ``orderid``'s line, and every waiting line:
        the stock a cancellation frees goes to the queue."""
        return self._track(self._for_cancellation(sku, orderid), with_lines=True)

    def for_new_hold(self, sku: str, holdid: str) -> model.Product | None:
        """The product and its batches, holding hold ``holdid`` if it is this SKU's: enough
        to place it. None for an unknown SKU, and for a ``holdid`` that another SKU's
        product holds (``sku_of_hold`` says which)."""
        return self._track(self._for_new_hold(sku, holdid), with_lines=False)

    def for_hold(self, holdid: str) -> model.Product | None:
        """The product of hold ``holdid`` and its batches, holding only that hold: enough
        to extend it. None for an unknown hold."""
        return self._track(self._for_hold(holdid, None, queue=False), with_lines=False)

    def for_hold_release(self, holdid: str) -> model.Product | None:
        """As ``for_hold``, and every waiting line: the units a release frees go to them.
        The batches hold none of their lines (a waiting line is in no batch, so the
        queue can be served into them)."""
        return self._track(self._for_hold(holdid, None, queue=True), with_lines=True)

    def for_confirmation(self, holdid: str, orderid: str) -> model.Product | None:
        """As ``for_hold``, and order ``orderid``'s line, allocated or waiting: a
        confirmation must not give the order a second line for the SKU."""
        return self._track(self._for_hold(holdid, orderid, queue=False), with_lines=True)

    def for_expiry(self, sku: str, now: datetime) -> model.Product | None:
        """The product, its batches, the holds due at ``now`` (active, past their expiry)
        and every waiting line: the units expiry frees go to them (the batches hold none
        of their lines, as for ``for_hold_release``)."""
        return self._track(self._for_expiry(sku, now), with_lines=True)

    def changes(self) -> list[ProductChanges]:
        """What changed in every product handed out since it was read (or added)."""
        return [changes_since(product, as_read) for product, as_read in self._as_read.items()]

    def _track(self, product: model.Product | None, with_lines: bool) -> model.Product | None:
        if product is not None:
            if any(seen.sku == product.sku for seen in self._as_read):
                raise RuntimeError(f"product {product.sku} was loaded twice in one Unit of Work")
            self._as_read[product] = ProductAsRead.of(product, with_lines)
        return product

    @abc.abstractmethod
    def has_batch(self, ref: str) -> bool:
        """Whether any product has a batch with this reference."""

    @abc.abstractmethod
    def skus_of_order(self, orderid: str) -> set[str]:
        """The SKUs the order has a line for, allocated or waiting."""

    @abc.abstractmethod
    def sku_of_hold(self, holdid: str) -> str | None:
        """The SKU of hold ``holdid``, in any state; None for an unknown hold."""

    @abc.abstractmethod
    def skus_with_due_holds(self, now: datetime, limit: int) -> list[str]:
        """Up to ``limit`` SKUs with an active hold past its expiry at ``now``."""

    @abc.abstractmethod
    def _add(self, product: model.Product) -> None: ...

    @abc.abstractmethod
    def _get(self, sku: str) -> model.Product | None: ...

    @abc.abstractmethod
    def _for_allocation(self, sku: str, orderid: str) -> model.Product | None: ...

    @abc.abstractmethod
    def _for_batch_change(self, ref: str) -> model.Product | None: ...

    @abc.abstractmethod
    def _for_cancellation(self, sku: str, orderid: str) -> model.Product | None: ...

    @abc.abstractmethod
    def _for_new_hold(self, sku: str, holdid: str) -> model.Product | None: ...

    @abc.abstractmethod
    def _for_hold(self, holdid: str, orderid: str | None, queue: bool) -> model.Product | None:
        """The hold's product with the hold; with ``orderid`` that order's line, allocated
        or waiting; with ``queue`` every waiting line."""

    @abc.abstractmethod
    def _for_expiry(self, sku: str, now: datetime) -> model.Product | None: ...

    @abc.abstractmethod
    def allocation_rows(self) -> set[AllocationRow]:
        """Every current allocation in the write model, for rebuilding the read model."""

    @abc.abstractmethod
    def availabilities(self) -> list[Availability]:
        """Every product's availability as the write model holds it, by SKU, for
        rebuilding the read model. The products stay share-locked until the
        transaction ends (where the database locks), so none changes meanwhile."""


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


class AbstractMovements(abc.ABC):
    """The ledger of stock movements, written in the transaction of the change that made
    them. Rows are only ever added: nothing rebuilds or rewrites them."""

    @abc.abstractmethod
    def add(self, sku: str, movement: Movement, source: Mapping[str, Any]) -> None:
        """Records one movement; ``source`` names what caused it (request, message...)."""

    @abc.abstractmethod
    def sums(self, sku: str | None = None) -> dict[str, int]:
        """Each SKU's sum of movements (only ``sku``'s, if given)."""


class AbstractAvailabilityView(abc.ABC):
    """The write side of the availability read model: one row per SKU, replaced in the
    transaction of every change of its product."""

    @abc.abstractmethod
    def put(self, availability: Availability) -> None:
        """Records the SKU's availability, replacing its row."""

    @abc.abstractmethod
    def remove(self, sku: str) -> None: ...

    @abc.abstractmethod
    def all(self) -> dict[str, Availability]: ...


@dataclass(frozen=True)
class OrderLineState:
    sku: str
    qty: int
    status: str  # "allocated" or "backordered"
    batchref: str | None
    eta: date | None


@dataclass(frozen=True)
class WaitingLine:
    orderid: str
    qty: int
    since: datetime


@dataclass(frozen=True)
class MovementRecord:
    """A movement as the ledger keeps it: when, and what caused it."""

    movement: Movement
    at: datetime
    source: dict[str, Any]


class AbstractReadModel(abc.ABC):
    """The query side (CQRS): answers from the read models and tables, never by loading
    an aggregate, and outside any Unit of Work. Sees every change committed before."""

    @abc.abstractmethod
    def allocations_for_order(self, orderid: str) -> list[dict[str, str]]:
        """The order's allocations as ``{"sku", "batchref"}`` dicts, ordered by SKU."""

    @abc.abstractmethod
    def availability(self, skus: Sequence[str]) -> list[Availability]:
        """The availability of each known SKU among ``skus``, in the order asked."""

    @abc.abstractmethod
    def order_lines(self, orderid: str) -> list[OrderLineState]:
        """Every line of the order, allocated or waiting, ordered by SKU."""

    @abc.abstractmethod
    def waiting_lines(self, sku: str) -> list[WaitingLine]:
        """The SKU's backorders, oldest first (the order they are served in)."""

    @abc.abstractmethod
    def hold(self, holdid: str, now: datetime) -> HoldState | None:
        """The hold as a client sees it at ``now`` (an active one past its expiry is
        expired); None for an unknown hold."""

    @abc.abstractmethod
    def movements(self, sku: str, after: int, limit: int) -> list[MovementRecord]:
        """The SKU's movements numbered after ``after``, oldest first, at most ``limit``."""


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


class AbstractChangePositions(abc.ABC):
    """Where the last change applied to each batch stood in its producer's order,
    recorded in the transaction that applied it."""

    @abc.abstractmethod
    def last(self, batchref: str) -> commands.Position | None: ...

    @abc.abstractmethod
    def record(self, batchref: str, position: commands.Position) -> None: ...


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

    # What sending does here, in the past tense, for the log: "published", or
    # "logged" by a publisher that only writes events to the log.
    delivery = "published"

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
