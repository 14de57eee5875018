"""Holds and stock movements through the bus, on the fakes (a clock the tests move)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from allocation import bootstrap
from allocation.config import Settings
from allocation.domain import commands
from allocation.domain.exceptions import HoldConflict, InvalidSku, OutOfStockError, UnknownHold
from allocation.domain.model import Allocation
from allocation.service_layer import stock
from allocation.service_layer.messagebus import MessageBus
from tests.fakes import FakeNotifications, FakeReadModel, FakeStore, FakeUnitOfWork

START = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Shop:
    bus: MessageBus
    store: FakeStore
    clock: Clock

    def published(self, channel: str) -> list[dict[str, object]]:
        return [
            {k: v for k, v in m.payload.items() if k not in ("message_id", "occurred_at")}
            for m in self.store.outbox
            if m.channel == channel
        ]

    def read_model(self) -> FakeReadModel:
        return FakeReadModel(self.store)


@pytest.fixture
def shop() -> Iterator[Shop]:
    store, clock = FakeStore(), Clock()
    bus = bootstrap.bootstrap(
        Settings(),
        uow_factory=lambda: FakeUnitOfWork(store),
        notifications=FakeNotifications(),
        clock=clock,
    )
    bus.handle(commands.CreateBatch("stock", "LAMP", 5))
    yield Shop(bus, store, clock)


def test_a_placed_hold_is_stored_published_and_counted(shop: Shop) -> None:
    hold = shop.bus.handle(commands.PlaceHold("h1", "LAMP", 2, 60))

    assert (hold.batchref, hold.status, hold.expires_at) == (
        "stock",
        "active",
        START + timedelta(seconds=60),
    )
    assert shop.published("hold_placed") == [
        {
            "holdid": "h1",
            "sku": "LAMP",
            "qty": 2,
            "batchref": "stock",
            "expires_at": "2026-12-05T10:01:00+00:00",
        }
    ]
    [availability] = shop.read_model().availability(["LAMP"])
    assert (availability.available, availability.held) == (3, 2)
    assert shop.read_model().hold("h1", shop.clock()) == hold


def test_no_stock_for_a_hold_is_out_of_stock_and_publishes_it(shop: Shop) -> None:
    with pytest.raises(OutOfStockError):
        shop.bus.handle(commands.PlaceHold("h1", "LAMP", 6, 60))
    assert shop.published("out_of_stock") == [{"sku": "LAMP"}]
    assert shop.read_model().hold("h1", shop.clock()) is None


def test_a_hold_for_an_unknown_sku_is_invalid(shop: Shop) -> None:
    with pytest.raises(InvalidSku):
        shop.bus.handle(commands.PlaceHold("h1", "NOPE", 1, 60))


def test_a_holdid_another_sku_uses_conflicts(shop: Shop) -> None:
    shop.bus.handle(commands.CreateBatch("vase-stock", "VASE", 5))
    shop.bus.handle(commands.PlaceHold("h1", "VASE", 1, 60))
    with pytest.raises(HoldConflict, match="placed for sku VASE"):
        shop.bus.handle(commands.PlaceHold("h1", "LAMP", 1, 60))


def test_confirming_allocates_the_line_and_ends_the_hold(shop: Shop) -> None:
    shop.bus.handle(commands.PlaceHold("h1", "LAMP", 2, 60))

    allocation = shop.bus.handle(commands.ConfirmHold("h1", "o1"))

    assert allocation == Allocation("stock")
    assert shop.store.view == {("o1", "LAMP"): "stock"}
    assert shop.published("line_allocated") == [
        {"orderid": "o1", "sku": "LAMP", "qty": 2, "batchref": "stock"}
    ]
    assert shop.published("hold_ended") == [
        {"holdid": "h1", "sku": "LAMP", "qty": 2, "reason": "confirmed", "orderid": "o1"}
    ]
    state = shop.read_model().hold("h1", shop.clock())
    assert state is not None and (state.status, state.orderid) == ("confirmed", "o1")


def test_no_request_can_confirm_a_hold_past_its_expiry(shop: Shop) -> None:
    shop.bus.handle(commands.PlaceHold("h1", "LAMP", 2, 60))
    shop.clock.advance(60)
    with pytest.raises(HoldConflict, match="expired"):
        shop.bus.handle(commands.ConfirmHold("h1", "o1"))
    assert shop.store.view == {}


def test_extending_and_releasing_by_holdid(shop: Shop) -> None:
    shop.bus.handle(commands.PlaceHold("h1", "LAMP", 2, 60))
    shop.clock.advance(30)

    extended = shop.bus.handle(commands.ExtendHold("h1", 600))
    released = shop.bus.handle(commands.ReleaseHold("h1"))

    assert extended.expires_at == shop.clock() + timedelta(seconds=600)
    assert released.status == "released"
    assert shop.published("hold_ended")[0]["reason"] == "released"
    with pytest.raises(UnknownHold):
        shop.bus.handle(commands.ReleaseHold("nope"))


def test_expiry_ends_each_due_hold_once(shop: Shop) -> None:
    shop.bus.handle(commands.PlaceHold("h1", "LAMP", 2, 1))
    shop.bus.handle(commands.PlaceHold("h2", "LAMP", 1, 600))
    shop.clock.advance(1)

    expired = stock.expire_due_holds(shop.bus, lambda: FakeUnitOfWork(shop.store), shop.clock)
    again = stock.expire_due_holds(shop.bus, lambda: FakeUnitOfWork(shop.store), shop.clock)

    assert (expired, again) == (1, 0)
    assert [m["holdid"] for m in shop.published("hold_ended")] == ["h1"]
    [availability] = shop.read_model().availability(["LAMP"])
    assert (availability.available, availability.held) == (4, 1)


def test_movements_say_what_caused_them_and_add_up_to_the_stock(shop: Shop) -> None:
    shop.bus.handle(commands.PlaceHold("h1", "LAMP", 2, 60), {"request_id": "r-1"})
    shop.bus.handle(commands.Allocate("o1", "LAMP", 1), {"request_id": "r-2"})

    records = shop.read_model().movements("LAMP", after=0, limit=10)

    assert [(r.movement.seq, r.movement.kind, r.source) for r in records] == [
        (1, "batch_added", {}),
        (2, "hold_placed", {"request_id": "r-1"}),
        (3, "allocated", {"request_id": "r-2"}),
    ]
    assert stock.check_movements(lambda: FakeUnitOfWork(shop.store)).disagreements == []


def test_a_ledger_that_disagrees_with_the_stock_is_reported(shop: Shop) -> None:
    stored = shop.store.products["LAMP"]
    stored.batches[0]._purchased_quantity = 7  # changed behind the aggregate's back

    [disagreement] = stock.check_movements(lambda: FakeUnitOfWork(shop.store)).disagreements

    assert (disagreement.sku, disagreement.movements, disagreement.available) == ("LAMP", 5, 7)


@pytest.mark.parametrize("end", ["release", "expiry"])
def test_units_a_hold_gives_back_go_to_the_waiting_lines(shop: Shop, end: str) -> None:
    shop.bus.handle(commands.PlaceHold("h1", "LAMP", 5, 60))
    shop.bus.handle(commands.Allocate("o1", "LAMP", 3, backorder=True))

    if end == "release":
        shop.bus.handle(commands.ReleaseHold("h1"))
    else:
        shop.clock.advance(60)
        stock.expire_due_holds(shop.bus, lambda: FakeUnitOfWork(shop.store), shop.clock)

    assert shop.store.view == {("o1", "LAMP"): "stock"}
    assert shop.read_model().waiting_lines("LAMP") == []
