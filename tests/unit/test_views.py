"""The read side's one retry, for a pooled connection the database dropped."""

from __future__ import annotations

import pytest

from allocation import views
from allocation.domain.exceptions import DatabaseUnavailable
from tests.fakes import FakeStore, FakeUnitOfWork


class DroppingOnce:
    """A Unit of Work factory whose first Unit of Work meets a dropped connection."""

    def __init__(self, store: FakeStore, failures: int) -> None:
        self.store = store
        self.failures = failures
        self.calls = 0

    def __call__(self) -> FakeUnitOfWork:
        self.calls += 1
        if self.calls <= self.failures:
            raise DatabaseUnavailable("server closed the connection unexpectedly")
        return FakeUnitOfWork(self.store)


def test_a_dropped_connection_is_retried_once() -> None:
    store = FakeStore(view={("o1", "LAMP"): "b1"})
    factory = DroppingOnce(store, failures=1)
    assert views.allocations("o1", factory) == [{"sku": "LAMP", "batchref": "b1"}]
    assert factory.calls == 2


def test_a_database_that_stays_down_is_reported() -> None:
    factory = DroppingOnce(FakeStore(), failures=2)
    with pytest.raises(DatabaseUnavailable):
        views.allocations("o1", factory)
    assert factory.calls == 2
