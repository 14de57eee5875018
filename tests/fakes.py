"""In-memory fakes of the ports, for unit tests (no mocks of our own classes)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from allocation.domain import commands, model
from allocation.domain.availability import Availability
from allocation.domain.exceptions import ConcurrencyConflict, DatabaseUnavailable
from allocation.domain.holds import Hold, HoldState
from allocation.domain.movements import Movement
from allocation.service_layer.messages import OutboxMessage
from allocation.service_layer.ports import (
    AbstractAllocationsView,
    AbstractAvailabilityView,
    AbstractChangePositions,
    AbstractDeadLetters,
    AbstractMovements,
    AbstractNotifications,
    AbstractOutbox,
    AbstractProcessedMessages,
    AbstractPublisher,
    AbstractReadModel,
    AbstractRepository,
    AllocationRow,
    Backlog,
    DeadLetter,
    MovementRecord,
    OrderLineState,
    WaitingLine,
)
from allocation.service_layer.product_changes import ProductChanges
from allocation.service_layer.unit_of_work import AbstractUnitOfWork


@dataclass
class FakeStore:
    """What a fake database holds; shared by every Unit of Work made from one factory."""

    products: dict[str, model.Product] = field(default_factory=dict)
    view: dict[tuple[str, str], str] = field(default_factory=dict)
    outbox: list[OutboxMessage] = field(default_factory=list)
    outbox_sent: set[int] = field(default_factory=set)
    processed: set[str] = field(default_factory=set)
    positions: dict[str, commands.Position] = field(default_factory=dict)
    availability: dict[str, Availability] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    movements: list[tuple[str, MovementRecord]] = field(default_factory=list)
    commits: int = 0
    commit_attempts: int = 0
    conflicts_to_raise: int = 0
    outages_to_raise: int = 0


class LinesNotLoaded(Exception):
    """The fake's word for the ORM's lazy='raise': this load did not read the lines."""


class _NotLoaded:
    """Stands for the lines of a batch that a load left out: any use raises."""

    def _refuse(self, *_args: object) -> Any:
        raise LinesNotLoaded("this load did not read the batch's order lines")

    __iter__ = __contains__ = __len__ = add = remove = discard = _refuse


class FakeRepository(AbstractRepository):
    """Hands out copies holding only what the real repository's load reads."""

    def __init__(self, stored: dict[str, model.Product]) -> None:
        super().__init__()
        self._stored = stored

    def _add(self, product: model.Product) -> None:
        pass  # stored at commit, from changes()

    def _get(self, sku: str) -> model.Product | None:
        return self._copy(self._stored.get(sku), lines=None, waiting=_everything)

    def _for_allocation(self, sku: str, orderid: str) -> model.Product | None:
        of_order = _of_order(orderid)
        return self._copy(self._stored.get(sku), lines=of_order, waiting=of_order)

    def _for_batch_change(self, ref: str) -> model.Product | None:
        found = next((p for p in self._stored.values() if p.batch(ref) is not None), None)
        return self._copy(found, lines=_everything, waiting=_everything, holds=_active)

    def _for_cancellation(self, sku: str, orderid: str) -> model.Product | None:
        return self._copy(self._stored.get(sku), lines=_of_order(orderid), waiting=_everything)

    def _for_new_hold(self, sku: str, holdid: str) -> model.Product | None:
        if self.sku_of_hold(holdid) not in (None, sku):
            return None
        return self._copy(self._stored.get(sku), None, _nothing, _holdid(holdid))

    def _for_hold(self, holdid: str, orderid: str | None, queue: bool) -> model.Product | None:
        sku = self.sku_of_hold(holdid)
        if sku is None:
            return None
        if queue:
            return self._copy(self._stored[sku], _nothing, _everything, _holdid(holdid))
        lines = None if orderid is None else _of_order(orderid)
        return self._copy(self._stored[sku], lines, lines or _nothing, _holdid(holdid))

    def _for_expiry(self, sku: str, now: datetime) -> model.Product | None:
        due: Callable[[Any], bool] = lambda hold: bool(hold.is_due(now))  # noqa: E731
        return self._copy(self._stored.get(sku), _nothing, _everything, due)

    def sku_of_hold(self, holdid: str) -> str | None:
        return next(
            (p.sku for p in self._stored.values() for h in p.holds if h.holdid == holdid), None
        )

    def skus_with_due_holds(self, now: datetime, limit: int) -> list[str]:
        due = [p.sku for p in self._stored.values() if any(h.is_due(now) for h in p.holds)]
        return sorted(due)[:limit]

    def has_batch(self, ref: str) -> bool:
        return any(p.batch(ref) is not None for p in self._stored.values())

    def skus_of_order(self, orderid: str) -> set[str]:
        return {
            product.sku
            for product in self._stored.values()
            if any(b.line_for_order(orderid) for b in product.batches)
            or any(w.orderid == orderid for w in product.backorders)
        }

    def allocation_rows(self) -> set[AllocationRow]:
        return {
            (line.orderid, line.sku, batch.reference)
            for product in self._stored.values()
            for batch in product.batches
            for line in batch.allocations
        }

    def availabilities(self) -> list[Availability]:
        return [self._stored[sku].availability() for sku in sorted(self._stored)]

    @staticmethod
    def _copy(
        product: model.Product | None,
        lines: Callable[[Any], bool] | None,
        waiting: Callable[[Any], bool],
        holds: Callable[[Any], bool] | None = None,
    ) -> model.Product | None:
        if product is None:
            return None
        loaded = copy.deepcopy(product)
        loaded.events = []  # events and movements are never stored in the product
        loaded.movements = []
        for batch in loaded.batches:
            held = batch._allocations
            batch._allocations = _NotLoaded() if lines is None else {x for x in held if lines(x)}  # type: ignore[assignment]
        loaded.backorders = [w for w in loaded.backorders if waiting(w)]
        loaded.holds = [h for h in loaded.holds if holds is not None and holds(h)]
        return loaded


def _everything(_line: Any) -> bool:
    return True


def _nothing(_line: Any) -> bool:
    return False


def _active(hold: Any) -> bool:
    return bool(hold.status == "active")


def _holdid(holdid: str) -> Callable[[Any], bool]:
    return lambda hold: bool(hold.holdid == holdid)


def _of_order(orderid: str) -> Callable[[Any], bool]:
    return lambda line: bool(line.orderid == orderid)


def store_changes(stored: dict[str, model.Product], changes: ProductChanges) -> None:
    """What the real repository's rows amount to: the changes applied to the stored product."""
    product = changes.product
    if changes.is_new:
        if product.sku in stored:  # the database's primary key says the same
            raise ConcurrencyConflict("fake: product exists")
        stored[product.sku] = copy.deepcopy(product)
        return
    target = stored[product.sku]
    if target.version_number != changes.read_version:
        raise ConcurrencyConflict("fake: version changed")
    target.version_number = product.version_number
    target.movement_seq = product.movement_seq
    for batch in changes.new_batches:
        target.batches.append(model.Batch(batch.reference, batch.sku, 0, batch.eta))
    for batch in [*changes.new_batches, *changes.changed_batches]:
        stored_batch = target.batch(batch.reference)
        assert stored_batch is not None
        stored_batch._purchased_quantity = batch.purchased_quantity
        stored_batch._allocated_quantity = batch.allocated_quantity
        stored_batch._held_quantity = batch.held_quantity
    for line in changes.removed_lines:
        for stored_batch in target.batches:
            stored_batch._allocations.discard(line)
    for ref, line in changes.added_lines:
        stored_batch = target.batch(ref)
        assert stored_batch is not None
        stored_batch._allocations.add(line)
    gone = {(orderid, sku) for orderid, sku, _qty, _since in changes.removed_waiting}
    target.backorders = [w for w in target.backorders if (w.orderid, w.sku) not in gone]
    target.backorders += [model.Backorder(*waiting) for waiting in changes.added_waiting]
    target.backordered_quantity = product.backordered_quantity
    _store_holds(target, changes)


def _store_holds(target: model.Product, changes: ProductChanges) -> None:
    stored = {hold.holdid: hold for hold in target.holds}
    for hold in changes.new_holds:
        if hold.holdid in stored:  # the primary key says the same
            raise ConcurrencyConflict("fake: hold exists")
        target.holds.append(copy.deepcopy(hold))
    for hold in changes.changed_holds:
        stored[hold.holdid].__dict__.update(copy.deepcopy(hold.__dict__))


class FakeAllocationsView(AbstractAllocationsView):
    def __init__(self, rows: dict[tuple[str, str], str]) -> None:
        self._rows = rows

    def add(self, orderid: str, sku: str, batchref: str) -> None:
        self._rows[(orderid, sku)] = batchref

    def remove(self, orderid: str, sku: str) -> None:
        self._rows.pop((orderid, sku), None)

    def all_rows(self) -> set[AllocationRow]:
        return {(orderid, sku, ref) for (orderid, sku), ref in self._rows.items()}


class FakeAvailabilityView(AbstractAvailabilityView):
    def __init__(self, rows: dict[str, Availability]) -> None:
        self._rows = rows

    def put(self, availability: Availability) -> None:
        self._rows[availability.sku] = availability

    def remove(self, sku: str) -> None:
        self._rows.pop(sku, None)

    def all(self) -> dict[str, Availability]:
        return dict(self._rows)


class FakeReadModel(AbstractReadModel):
    """Answers from what the fake store holds, i.e. what was committed."""

    def __init__(self, store: FakeStore) -> None:
        self._store = store

    def availability(self, skus: Sequence[str]) -> list[Availability]:
        rows = self._store.availability
        return [rows[sku] for sku in dict.fromkeys(skus) if sku in rows]

    def order_lines(self, orderid: str) -> list[OrderLineState]:
        found = []
        for product in self._store.products.values():
            for batch in product.batches:
                line = batch.line_for_order(orderid)
                if line is not None:
                    found.append(
                        OrderLineState(line.sku, line.qty, "allocated", batch.reference, batch.eta)
                    )
            for waiting in product.backorders:
                if waiting.orderid == orderid:
                    found.append(
                        OrderLineState(waiting.sku, waiting.qty, "backordered", None, None)
                    )
        return sorted(found, key=lambda line: line.sku)

    def waiting_lines(self, sku: str) -> list[WaitingLine]:
        product = self._store.products.get(sku)
        queue = [] if product is None else sorted(product.backorders, key=model.Backorder.place)
        return [WaitingLine(w.orderid, w.qty, w.since) for w in queue]

    def allocations_for_order(self, orderid: str) -> list[dict[str, str]]:
        return [
            {"sku": sku, "batchref": ref}
            for (order, sku), ref in sorted(self._store.view.items())
            if order == orderid
        ]

    def hold(self, holdid: str, now: datetime) -> HoldState | None:
        found: list[Hold] = [
            h for p in self._store.products.values() for h in p.holds if h.holdid == holdid
        ]
        return found[0].seen_at(now) if found else None

    def movements(self, sku: str, after: int, limit: int) -> list[MovementRecord]:
        rows = [r for s, r in self._store.movements if s == sku and r.movement.seq > after]
        return sorted(rows, key=lambda r: r.movement.seq)[:limit]


class FakeMovements(AbstractMovements):
    def __init__(self, rows: list[tuple[str, MovementRecord]]) -> None:
        self.rows = rows

    def add(self, sku: str, movement: Movement, source: Mapping[str, Any]) -> None:
        if any(s == sku and r.movement.seq == movement.seq for s, r in self.rows):
            raise ConcurrencyConflict("fake: movement exists")  # the primary key
        self.rows.append((sku, MovementRecord(movement, datetime.now(UTC), dict(source))))

    def sums(self, sku: str | None = None) -> dict[str, int]:
        totals: dict[str, int] = {}
        for name, record in self.rows:
            if sku is None or name == sku:
                totals[name] = totals.get(name, 0) + record.movement.qty
        return totals


class FakeOutbox(AbstractOutbox):
    def __init__(self, messages: list[OutboxMessage], sent: set[int]) -> None:
        self.messages = messages
        self.sent = sent

    def add(self, message: OutboxMessage) -> None:
        self.messages.append(dataclasses.replace(message, id=len(self.messages) + 1))

    def pending(self, limit: int) -> list[OutboxMessage]:
        return [m for m in self.messages if m.id not in self.sent][:limit]

    def mark_sent(self, ids: Sequence[int]) -> None:
        self.sent.update(ids)

    def prune(self, sent_before: datetime) -> int:
        return 0

    def backlog(self) -> Backlog:
        unsent = self.pending(len(self.messages))
        return Backlog(len(unsent), min((m.occurred_at for m in unsent), default=None))


class FakeProcessedMessages(AbstractProcessedMessages):
    def __init__(self, ids: set[str]) -> None:
        self.ids = ids

    def contains(self, message_id: str) -> bool:
        return message_id in self.ids

    def add(self, message_id: str) -> None:
        self.ids.add(message_id)


class FakeChangePositions(AbstractChangePositions):
    def __init__(self, positions: dict[str, commands.Position]) -> None:
        self.positions = positions

    def last(self, batchref: str) -> commands.Position | None:
        return self.positions.get(batchref)

    def record(self, batchref: str, position: commands.Position) -> None:
        self.positions[batchref] = position


class FakeDeadLetters(AbstractDeadLetters):
    def __init__(self, letters: list[DeadLetter]) -> None:
        self.letters = letters

    def add(self, letter: DeadLetter) -> None:
        self.letters.append(dataclasses.replace(letter, id=len(self.letters) + 1))

    def list(self, include_redriven: bool = False) -> Sequence[DeadLetter]:
        return [letter for letter in self.letters if include_redriven or letter.redriven_at is None]

    def get(self, letter_id: int) -> DeadLetter | None:
        return next((letter for letter in self.letters if letter.id == letter_id), None)

    def mark_redriven(self, letter_id: int, at: datetime) -> None:
        self.letters[:] = [
            dataclasses.replace(letter, redriven_at=at) if letter.id == letter_id else letter
            for letter in self.letters
        ]


class FakeUnitOfWork(AbstractUnitOfWork):
    """Works on a copy of the store, written back on commit, so rollback really discards."""

    def __init__(self, store: FakeStore) -> None:
        super().__init__()
        self.store = store
        self._products = copy.deepcopy(store.products)  # this transaction's rows
        self._view = dict(store.view)
        self._availability = dict(store.availability)
        self._outbox = list(store.outbox)
        self._outbox_sent = set(store.outbox_sent)
        self._processed = set(store.processed)
        self._positions = dict(store.positions)
        self._dead_letters = list(store.dead_letters)
        self._movements = list(store.movements)
        self.products = FakeRepository(self._products)
        self.allocations_view = FakeAllocationsView(self._view)
        self.availability_view = FakeAvailabilityView(self._availability)
        self.outbox = FakeOutbox(self._outbox, self._outbox_sent)
        self.processed_messages = FakeProcessedMessages(self._processed)
        self.change_positions = FakeChangePositions(self._positions)
        self.dead_letters = FakeDeadLetters(self._dead_letters)
        self.movements = FakeMovements(self._movements)

    def _commit(self, changes: Sequence[ProductChanges]) -> None:
        self.store.commit_attempts += 1
        if self.store.outages_to_raise > 0:
            self.store.outages_to_raise -= 1
            raise DatabaseUnavailable("fake outage")
        if self.store.conflicts_to_raise > 0:
            self.store.conflicts_to_raise -= 1
            raise ConcurrencyConflict("fake")
        for change in changes:
            store_changes(self._products, change)
        self.store.products = copy.deepcopy(self._products)
        self.store.view = dict(self._view)
        self.store.availability = dict(self._availability)
        self.store.outbox = list(self._outbox)
        self.store.outbox_sent = set(self._outbox_sent)
        self.store.processed = set(self._processed)
        self.store.positions = dict(self._positions)
        self.store.dead_letters = list(self._dead_letters)
        self.store.movements = list(self._movements)
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
