"""Which server a process reaches: a change is a failover, logged once and counted."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import Counter

from allocation.adapters.failover import ServerWatch, address


def test_a_new_server_is_a_failover_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failovers = Counter("test_failovers", "failovers seen", registry=None)
    watch = ServerWatch("database primary", failovers)
    with caplog.at_level(logging.INFO, logger="allocation.adapters.failover"):
        for reached in ("10.0.0.1:5432", "10.0.0.1:5432", "10.0.0.2:5432", "10.0.0.2:5432"):
            watch.reached(reached)
    assert [r.getMessage() for r in caplog.records] == [
        "the database primary is 10.0.0.1:5432",
        "the database primary is now 10.0.0.2:5432 (was 10.0.0.1:5432): failed over",
    ]
    assert failovers._value.get() == 1
    assert watch.address == "10.0.0.2:5432"


def test_an_ipv6_address_is_bracketed() -> None:
    assert (address("::1", 5432), address("db", 5432)) == ("[::1]:5432", "db:5432")
