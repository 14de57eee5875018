"""The Redis consumer's message handling, with a fake bus behind it."""

from __future__ import annotations

import logging

import pytest

from allocation.domain import commands
from allocation.entrypoints.redis_consumer import handle_message
from tests.conftest import FakeService


@pytest.fixture
def service(fake_service: FakeService) -> FakeService:
    fake_service.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
    return fake_service


def purchased(service: FakeService) -> int:
    return service.store.products["LAMP"].batches[0].purchased_quantity


def test_a_valid_message_changes_the_batch(service: FakeService) -> None:
    assert handle_message(service.bus, b'{"batchref": "b1", "qty": 4}') is True
    assert purchased(service) == 4


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"batchref": "b1"}',
        b'{"batchref": "b1", "qty": "4"}',
        b'{"batchref": "b1", "qty": -1}',
        b'{"batchref": 5, "qty": 4}',
        b'["b1", 4]',
    ],
)
def test_malformed_messages_are_logged_and_skipped(
    service: FakeService, caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    with caplog.at_level(logging.WARNING):
        assert handle_message(service.bus, data) is False
    assert "skipped malformed" in caplog.text
    assert purchased(service) == 10


def test_an_unknown_batch_is_logged_and_skipped(
    service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert handle_message(service.bus, b'{"batchref": "nope", "qty": 4}') is False
    assert "Unknown batch nope" in caplog.text
