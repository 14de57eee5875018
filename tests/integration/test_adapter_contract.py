"""One set of tests for every implementation of the read-model port, so fakes cannot drift."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from allocation.adapters.repository import SqlAlchemyAllocationsView
from allocation.service_layer.ports import AbstractAllocationsView
from tests.fakes import FakeAllocationsView


@pytest.fixture(params=["fake", "sqlite", "postgres"])
def view(request: pytest.FixtureRequest) -> Iterator[AbstractAllocationsView]:
    if request.param == "fake":
        yield FakeAllocationsView({})
        return
    factory: sessionmaker[Session] = request.getfixturevalue(f"{request.param}_session_factory")
    with factory() as session:
        yield SqlAlchemyAllocationsView(session)
        session.commit()


def test_lists_an_orders_allocations_by_sku(view: AbstractAllocationsView) -> None:
    view.add("o1", "ZEBRA", "b-z")
    view.add("o1", "APPLE", "b-a")
    view.add("o2", "APPLE", "b-x")
    assert view.for_order("o1") == [
        {"sku": "APPLE", "batchref": "b-a"},
        {"sku": "ZEBRA", "batchref": "b-z"},
    ]


def test_adding_again_replaces_the_batch(view: AbstractAllocationsView) -> None:
    view.add("o1", "LAMP", "b1")
    view.add("o1", "LAMP", "b2")
    assert view.for_order("o1") == [{"sku": "LAMP", "batchref": "b2"}]


def test_removes_one_sku_of_an_order(view: AbstractAllocationsView) -> None:
    view.add("o1", "LAMP", "b1")
    view.add("o1", "RUG", "b2")
    view.remove("o1", "LAMP")
    view.remove("o1", "NEVER-THERE")
    assert view.for_order("o1") == [{"sku": "RUG", "batchref": "b2"}]
    assert view.for_order("unknown") == []
