"""The consumer's processing of one message, with a fake bus behind it."""

from __future__ import annotations

import threading

import pytest

from allocation.config import Settings
from allocation.domain import commands
from allocation.entrypoints.redis_consumer import Outcome, Processor
from tests.conftest import FakeService


@pytest.fixture
def service(fake_service: FakeService) -> FakeService:
    fake_service.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
    return fake_service


@pytest.fixture
def processor(service: FakeService) -> Processor:
    return Processor(service.bus, Settings(consumer_max_attempts=3), threading.Event())


def purchased(service: FakeService) -> int:
    return service.store.products["LAMP"].batches[0].purchased_quantity


def test_a_valid_message_changes_the_batch(service: FakeService, processor: Processor) -> None:
    assert processor.process(b'{"batchref": "b1", "qty": 4}', "test") is Outcome.APPLIED
    assert purchased(service) == 4


def test_a_message_id_is_applied_once(service: FakeService, processor: Processor) -> None:
    first = processor.process(b'{"batchref": "b1", "qty": 4, "message_id": "m1"}', "test")
    processor.process(b'{"batchref": "b1", "qty": 7, "message_id": "m2"}', "test")
    again = processor.process(b'{"batchref": "b1", "qty": 4, "message_id": "m1"}', "test")
    assert (first, again) == (Outcome.APPLIED, Outcome.DUPLICATE)
    assert purchased(service) == 7
    assert service.store.processed == {"m1", "m2"}


def test_a_fallback_id_makes_redelivery_idempotent(
    service: FakeService, processor: Processor
) -> None:
    data = b'{"batchref": "b1", "qty": 4}'
    assert processor.process(data, "stream", fallback_id="stream:1-0") is Outcome.APPLIED
    assert processor.process(data, "stream", fallback_id="stream:1-0") is Outcome.DUPLICATE


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "malformed: Body is not valid JSON"),
        (b'{"batchref": "b1"}', "malformed: qty: Field required"),
        (b'{"batchref": "b1", "qty": "4"}', "malformed: qty: Input should be a valid integer"),
        (b'{"batchref": "b1", "qty": -1}', "malformed: qty: Input should be greater than"),
        (b'["b1", 4]', "malformed: Body should be a JSON object"),
        (b'{"batchref": "nope", "qty": 4}', "Unknown batch nope"),
    ],
)
def test_messages_that_cannot_apply_are_dead_lettered(
    service: FakeService, processor: Processor, data: bytes, reason: str
) -> None:
    assert processor.process(data, "channel:x") is Outcome.DEAD_LETTERED
    [letter] = service.store.dead_letters
    assert (letter.source, letter.payload) == ("channel:x", data.decode())
    assert letter.error.startswith(reason)
    assert purchased(service) == 10


def test_a_message_that_keeps_failing_is_dead_lettered_after_bounded_retries(
    service: FakeService, processor: Processor
) -> None:
    # Every commit of all 3 attempts loses a race (each attempt is retried by the bus).
    service.store.conflicts_to_raise = 3 * Settings().commit_attempts
    outcome = processor.process(b'{"batchref": "b1", "qty": 4, "message_id": "m9"}', "test")
    assert outcome is Outcome.DEAD_LETTERED
    [letter] = service.store.dead_letters
    assert letter.error.startswith("failed 3 times")
    assert letter.message_id is None
    assert purchased(service) == 10


def test_a_message_is_kept_for_later_when_even_dead_lettering_fails(
    service: FakeService, processor: Processor
) -> None:
    service.store.conflicts_to_raise = 10**6
    outcome = processor.process(b'{"batchref": "b1", "qty": 4}', "test")
    assert outcome is Outcome.RETRY_LATER
    assert service.store.dead_letters == []
