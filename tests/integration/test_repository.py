"""The repository's contract, run against the fake, SQLite and PostgreSQL.

Each load reads a stated part of a product; what it leaves out cannot be
touched. Changes reach storage at commit, whatever was loaded.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from allocation.domain import model
from tests.integration.conftest import UnitOfWorkFactory


def save(uow_factory: UnitOfWorkFactory, product: model.Product) -> None:
    with uow_factory() as uow:
        uow.products.add(product)
        uow.commit()


def sofa() -> model.Product:
    product = model.Product("SOFA")
    product.add_batch(model.Batch("b-ship", "SOFA", 50, date(2030, 1, 1)))
    product.add_batch(model.Batch("b-stock", "SOFA", 20))
    product.allocate(model.OrderLine("o1", "SOFA", 5))
    product.allocate(model.OrderLine("o2", "SOFA", 3))
    return product


def lines(product: model.Product) -> dict[str, set[model.OrderLine]]:
    return {batch.reference: set(batch.allocations) for batch in product.batches}


def test_for_allocation_holds_only_that_orders_lines(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.for_allocation("SOFA", "o1")
        assert loaded is not None
        assert (loaded.version_number, loaded.events) == (4, [])
        assert lines(loaded) == {"b-ship": set(), "b-stock": {model.OrderLine("o1", "SOFA", 5)}}
        ship, stock = loaded.batches
        assert (ship.reference, ship.eta, ship.available_quantity) == (
            "b-ship",
            date(2030, 1, 1),
            50,
        )
        assert (stock.reference, stock.eta, stock.allocated_quantity) == ("b-stock", None, 8)
        assert uow.products.for_allocation("NOPE", "o1") is None


def test_get_reads_no_lines_and_refuses_to_touch_them(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.get("SOFA")
        assert loaded is not None
        assert [b.allocated_quantity for b in loaded.batches] == [0, 8]
        with pytest.raises(Exception, match="lazy='raise'|did not read"):
            loaded.allocate(model.OrderLine("o3", "SOFA", 1))
        assert uow.products.get("NOPE") is None


def test_for_batch_change_holds_every_line(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.for_batch_change("b-ship")
        assert loaded is not None and loaded.sku == "SOFA"
        assert lines(loaded)["b-stock"] == {
            model.OrderLine("o1", "SOFA", 5),
            model.OrderLine("o2", "SOFA", 3),
        }
        assert uow.products.for_batch_change("nope") is None
        assert uow.products.has_batch("b-stock") and not uow.products.has_batch("nope")
        assert uow.products.seen == {loaded}


def test_an_allocation_on_a_partial_load_keeps_the_other_lines(
    uow_factory: UnitOfWorkFactory,
) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.for_allocation("SOFA", "o3")
        assert loaded is not None
        assert loaded.allocate(model.OrderLine("o3", "SOFA", 2)).batchref == "b-stock"
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b-stock")
        assert everything is not None
        assert {line.orderid for line in everything.batches[1].allocations} == {"o1", "o2", "o3"}
        assert (everything.batches[1].allocated_quantity, everything.version_number) == (10, 5)


def test_a_new_batch_on_a_product_read_without_lines(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.get("SOFA")
        assert loaded is not None
        loaded.add_batch(model.Batch("b-more", "SOFA", 7))
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b-more")
        assert everything is not None
        assert [b.reference for b in everything.batches] == ["b-ship", "b-stock", "b-more"]
        assert len(everything.batches[1].allocations) == 2  # the lines were left alone


def test_a_line_moving_to_another_batch_is_stored_once(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.for_batch_change("b-stock")
        assert loaded is not None
        # Both lines leave b-stock; o2 fits back, o1 moves to the shipment.
        loaded.change_batch_quantity("b-stock", 4)
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b-stock")
        assert everything is not None
        assert lines(everything) == {
            "b-ship": {model.OrderLine("o1", "SOFA", 5)},
            "b-stock": {model.OrderLine("o2", "SOFA", 3)},
        }
        assert [b.allocated_quantity for b in everything.batches] == [5, 3]


def test_nothing_is_stored_without_commit(uow_factory: UnitOfWorkFactory) -> None:
    with uow_factory() as uow:
        uow.products.add(sofa())
    with uow_factory() as uow:
        assert uow.products.get("SOFA") is None


T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def lamp_with_a_queue() -> model.Product:
    """LAMP: 4 units, all held by o1; o2, o3 and o4 waiting (o3 first)."""
    product = model.Product("LAMP")
    product.add_batch(model.Batch("b1", "LAMP", 4))
    product.allocate(model.OrderLine("o1", "LAMP", 4, T0))
    for orderid, qty, minute in (("o2", 3, 2), ("o3", 5, 1), ("o4", 1, 3)):
        line = model.OrderLine(orderid, "LAMP", qty, T0 + timedelta(minutes=minute))
        product.allocate(line, backorder=True)
    return product


def queue(product: model.Product) -> list[tuple[str, int, datetime]]:
    ordered = sorted(product.backorders, key=model.Backorder.place)
    return [(b.orderid, b.qty, b.since.astimezone(UTC)) for b in ordered]


def test_waiting_lines_are_stored_with_their_places(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, lamp_with_a_queue())
    with uow_factory() as uow:
        loaded = uow.products.get("LAMP")
        assert loaded is not None
        assert queue(loaded) == [
            ("o3", 5, T0 + timedelta(minutes=1)),
            ("o2", 3, T0 + timedelta(minutes=2)),
            ("o4", 1, T0 + timedelta(minutes=3)),
        ]
        assert loaded.backordered_quantity == 9


def test_for_allocation_holds_only_that_orders_waiting_line(
    uow_factory: UnitOfWorkFactory,
) -> None:
    save(uow_factory, lamp_with_a_queue())
    with uow_factory() as uow:
        loaded = uow.products.for_allocation("LAMP", "o2")
        assert loaded is not None
        assert [b.orderid for b in loaded.backorders] == ["o2"]
        assert loaded.backordered_quantity == 9  # every waiting unit, loaded or not
        again = loaded.allocate(model.OrderLine("o2", "LAMP", 3), backorder=True)
        assert again == model.Allocation(None, backordered=True)


def test_for_cancellation_holds_the_orders_line_and_the_whole_queue(
    uow_factory: UnitOfWorkFactory,
) -> None:
    save(uow_factory, lamp_with_a_queue())
    with uow_factory() as uow:
        loaded = uow.products.for_cancellation("LAMP", "o1")
        assert loaded is not None
        assert lines(loaded) == {"b1": {model.OrderLine("o1", "LAMP", 4)}}
        assert [b[0] for b in queue(loaded)] == ["o3", "o2", "o4"]
        assert uow.products.skus_of_order("o1") == {"LAMP"}
        assert uow.products.skus_of_order("o3") == {"LAMP"}
        assert uow.products.skus_of_order("nobody") == set()


def test_a_cancellation_filling_the_queue_is_stored(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, lamp_with_a_queue())
    with uow_factory() as uow:
        loaded = uow.products.for_cancellation("LAMP", "o1")
        assert loaded is not None
        loaded.cancel("o1")  # 4 free: o3 (5) does not fit and is skipped; o2 and o4 fit
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b1")
        assert everything is not None
        assert {line.orderid for line in everything.batches[0].allocations} == {"o2", "o4"}
        assert [b[0] for b in queue(everything)] == ["o3"]
        assert everything.backordered_quantity == 5
        accepted = {line.orderid: line.accepted_at for line in everything.batches[0].allocations}
        assert accepted["o2"] == T0 + timedelta(minutes=2)  # kept from when it waited


def test_availabilities_are_the_write_models(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, lamp_with_a_queue())
    save(uow_factory, sofa())
    with uow_factory() as uow:
        found = uow.products.availabilities()
    assert [(a.sku, a.available, a.backordered) for a in found] == [
        ("LAMP", 0, 9),
        ("SOFA", 62, 0),
    ]
    assert found[1].slots[0].eta is None  # warehouse first


def test_a_new_batch_fills_the_queue_on_a_load_without_lines(
    uow_factory: UnitOfWorkFactory,
) -> None:
    save(uow_factory, lamp_with_a_queue())
    with uow_factory() as uow:
        loaded = uow.products.get("LAMP")
        assert loaded is not None
        # Waiting lines never fit the batches already there, so only the new one is
        # touched: the lines `get` leaves out are not needed.
        loaded.add_batch(model.Batch("b2", "LAMP", 6))
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b2")
        assert everything is not None
        assert lines(everything)["b2"] == {
            model.OrderLine("o3", "LAMP", 5),
            model.OrderLine("o4", "LAMP", 1),
        }
        assert [b[0] for b in queue(everything)] == ["o2"]


NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)


def lamp_with_holds() -> model.Product:
    """LAMP: b1 of 10; o1 holds 1; hold h1 (2 units, 15 minutes) and h2 (3, 1 minute)."""
    product = model.Product("LAMP")
    product.add_batch(model.Batch("b1", "LAMP", 10))
    product.allocate(model.OrderLine("o1", "LAMP", 1, NOW))
    product.place_hold("h1", 2, NOW + timedelta(minutes=15), NOW)
    product.place_hold("h2", 3, NOW + timedelta(minutes=1), NOW + timedelta(seconds=1))
    return product


def holds(product: model.Product) -> list[tuple[str, str, int, str]]:
    return [(h.holdid, h.batchref, h.qty, h.status) for h in product.holds]


def test_for_new_hold_holds_only_that_hold_of_this_sku(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, lamp_with_holds())
    save(uow_factory, sofa())
    with uow_factory() as uow:
        loaded = uow.products.for_new_hold("LAMP", "h1")
        assert loaded is not None and holds(loaded) == [("h1", "b1", 2, "active")]
        assert loaded.batches[0].held_quantity == 5  # every active hold's units
        assert loaded.holds[0].expires_at == NOW + timedelta(minutes=15)
    with uow_factory() as uow:
        fresh = uow.products.for_new_hold("LAMP", "new")
        assert fresh is not None and fresh.holds == []
    with uow_factory() as uow:
        assert uow.products.for_new_hold("SOFA", "h1") is None  # h1 is LAMP's
        assert uow.products.for_new_hold("NOPE", "new") is None
        assert uow.products.sku_of_hold("h1") == "LAMP"
        assert uow.products.sku_of_hold("new") is None


def test_loads_by_holdid(uow_factory: UnitOfWorkFactory) -> None:
    product = lamp_with_holds()
    product.allocate(model.OrderLine("o2", "LAMP", 20, NOW), backorder=True)
    save(uow_factory, product)
    with uow_factory() as uow:
        extend = uow.products.for_hold("h2")
        assert extend is not None and holds(extend) == [("h2", "b1", 3, "active")]
        assert extend.backorders == []
    with uow_factory() as uow:
        release = uow.products.for_hold_release("h2")
        assert release is not None and [b.orderid for b in release.backorders] == ["o2"]
    with uow_factory() as uow:
        confirm = uow.products.for_confirmation("h1", "o1")
        assert confirm is not None and holds(confirm) == [("h1", "b1", 2, "active")]
        assert lines(confirm) == {"b1": {model.OrderLine("o1", "LAMP", 1)}}
    with uow_factory() as uow:
        waiting = uow.products.for_confirmation("h1", "o2")
        assert waiting is not None and [b.orderid for b in waiting.backorders] == ["o2"]
        assert uow.products.seen == {waiting}
    with uow_factory() as uow:
        assert uow.products.for_hold("nope") is None


def test_for_expiry_holds_the_due_holds_and_the_queue(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, lamp_with_holds())
    at = NOW + timedelta(minutes=2)
    with uow_factory() as uow:
        loaded = uow.products.for_expiry("LAMP", at)
        assert loaded is not None and holds(loaded) == [("h2", "b1", 3, "active")]
        assert uow.products.skus_with_due_holds(at, 10) == ["LAMP"]
        assert uow.products.skus_with_due_holds(NOW, 10) == []


def test_hold_changes_are_stored(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, lamp_with_holds())
    with uow_factory() as uow:
        loaded = uow.products.for_confirmation("h1", "o9")
        assert loaded is not None
        loaded.confirm_hold("h1", "o9", NOW)
        uow.commit()
    with uow_factory() as uow:
        loaded = uow.products.for_expiry("LAMP", NOW + timedelta(minutes=2))
        assert loaded is not None
        loaded.expire_holds(NOW + timedelta(minutes=2))
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b1")
        assert everything is not None
        assert everything.holds == []  # only active holds
        batch = everything.batches[0]
        assert (batch.allocated_quantity, batch.held_quantity) == (3, 0)
        assert model.OrderLine("o9", "LAMP", 2) in batch.allocations
        assert everything.movement_seq == 7
    with uow_factory() as uow:
        confirmed = uow.products.for_hold("h1")
        assert confirmed is not None
        assert (confirmed.holds[0].status, confirmed.holds[0].orderid) == ("confirmed", "o9")


def test_for_batch_change_holds_every_active_hold(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, lamp_with_holds())
    with uow_factory() as uow:
        loaded = uow.products.for_batch_change("b1")
        assert loaded is not None
        assert [h.holdid for h in loaded.holds] == ["h1", "h2"]
        loaded.change_batch_quantity("b1", 4)  # 1 allocated, 5 held: h2 (placed last) goes
        uow.commit()
    with uow_factory() as uow:
        released = uow.products.for_hold("h2")
        assert released is not None and released.holds[0].status == "released"
        assert released.batches[0].held_quantity == 2
    with uow_factory() as uow:
        left = uow.products.for_batch_change("b1")
        assert left is not None and [h.holdid for h in left.holds] == ["h1"]


def test_a_release_serving_the_queue_is_stored(uow_factory: UnitOfWorkFactory) -> None:
    product = lamp_with_holds()  # 10 units: o1 has 1, h1 2, h2 3; 4 free
    product.allocate(model.OrderLine("o2", "LAMP", 6, NOW), backorder=True)
    save(uow_factory, product)
    with uow_factory() as uow:
        loaded = uow.products.for_hold_release("h2")
        assert loaded is not None
        loaded.release_hold("h2", NOW)  # 7 free: o2 takes 6
        uow.commit()
    with uow_factory() as uow:
        everything = uow.products.for_batch_change("b1")
        assert everything is not None
        assert {line.orderid for line in everything.batches[0].allocations} == {"o1", "o2"}
        assert everything.backorders == [] and everything.backordered_quantity == 0


def test_a_product_is_loaded_once_per_unit_of_work(uow_factory: UnitOfWorkFactory) -> None:
    save(uow_factory, sofa())
    with uow_factory() as uow:
        assert uow.products.get("SOFA") is not None
        with pytest.raises(RuntimeError, match="loaded twice"):
            uow.products.for_allocation("SOFA", "o1")
