"""Inbound messages (the consumer's use case), with fakes behind the bus."""

from __future__ import annotations

import json
import threading

import pytest

from allocation.config import Settings
from allocation.domain import commands
from allocation.entrypoints.workers import messages
from allocation.service_layer.inbound import Inbox, Outcome, Rejected
from tests.conftest import FakeService

ATTEMPTS = 3


@pytest.fixture
def service(fake_service: FakeService) -> FakeService:
    fake_service.bus.handle(commands.CreateBatch("b1", "LAMP", 10, None))
    return fake_service


def make_inbox(service: FakeService, stop: threading.Event | None = None) -> Inbox:
    return Inbox(
        service.bus,
        service.api.uow_factory,
        messages.parse_change_batch_quantity,
        ATTEMPTS,
        stop or threading.Event(),
    )


@pytest.fixture
def inbox(service: FakeService) -> Inbox:
    return make_inbox(service)


def purchased(service: FakeService) -> int:
    return service.store.products["LAMP"].batches[0].purchased_quantity


def test_a_valid_message_changes_the_batch(service: FakeService, inbox: Inbox) -> None:
    assert inbox.process(b'{"batchref": "b1", "qty": 4}', "test") is Outcome.APPLIED
    assert purchased(service) == 4


def test_a_message_id_is_applied_once(service: FakeService, inbox: Inbox) -> None:
    first = inbox.process(b'{"batchref": "b1", "qty": 4, "message_id": "m1"}', "test")
    inbox.process(b'{"batchref": "b1", "qty": 7, "message_id": "m2"}', "test")
    again = inbox.process(b'{"batchref": "b1", "qty": 4, "message_id": "m1"}', "test")
    assert (first, again) == (Outcome.APPLIED, Outcome.DUPLICATE)
    assert purchased(service) == 7
    assert service.store.processed == {"m1", "m2"}


def test_a_fallback_id_makes_redelivery_idempotent(inbox: Inbox) -> None:
    data = b'{"batchref": "b1", "qty": 4}'
    assert inbox.process(data, "stream", fallback_id="stream:1-0") is Outcome.APPLIED
    assert inbox.process(data, "stream", fallback_id="stream:1-0") is Outcome.DUPLICATE


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
    service: FakeService, inbox: Inbox, data: bytes, reason: str
) -> None:
    assert inbox.process(data, "channel:x") is Outcome.DEAD_LETTERED
    [letter] = service.store.dead_letters
    assert (letter.source, letter.payload) == ("channel:x", data.decode())
    assert letter.error.startswith(reason)
    assert purchased(service) == 10


def test_a_message_that_keeps_conflicting_runs_only_the_bus_retries(
    service: FakeService, inbox: Inbox
) -> None:
    """The bus retries a lost race COMMIT_ATTEMPTS times; the inbox adds none of its own."""
    service.store.conflicts_to_raise = Settings().commit_attempts
    before = service.store.commit_attempts
    outcome = inbox.process(b'{"batchref": "b1", "qty": 4, "message_id": "m9"}', "test")
    # Every attempt the bus made, then one commit: the dead letter's.
    assert service.store.commit_attempts - before == Settings().commit_attempts + 1
    assert outcome is Outcome.DEAD_LETTERED
    [letter] = service.store.dead_letters
    assert "changed by another request" in letter.error
    assert purchased(service) == 10


def test_an_unreachable_database_is_retried_then_dead_lettered(
    service: FakeService, inbox: Inbox
) -> None:
    service.store.outages_to_raise = ATTEMPTS
    before = service.store.commit_attempts
    outcome = inbox.process(b'{"batchref": "b1", "qty": 4}', "test")
    assert service.store.commit_attempts - before == ATTEMPTS + 1  # the last: the dead letter
    assert outcome is Outcome.DEAD_LETTERED
    [letter] = service.store.dead_letters
    assert letter.error.startswith(f"failed {ATTEMPTS} times")


def test_a_database_back_in_time_applies_the_message(service: FakeService, inbox: Inbox) -> None:
    service.store.outages_to_raise = ATTEMPTS - 1
    assert inbox.process(b'{"batchref": "b1", "qty": 4}', "test") is Outcome.APPLIED
    assert purchased(service) == 4


def test_a_message_is_kept_for_later_when_even_dead_lettering_fails(
    service: FakeService, inbox: Inbox
) -> None:
    service.store.outages_to_raise = 10**6
    assert inbox.process(b'{"batchref": "b1", "qty": 4}', "test") is Outcome.RETRY_LATER
    assert service.store.dead_letters == []


def test_stopping_during_a_retry_keeps_the_message(service: FakeService) -> None:
    stop = threading.Event()
    stop.set()
    service.store.outages_to_raise = 1
    inbox = make_inbox(service, stop)
    assert inbox.process(b'{"batchref": "b1", "qty": 4}', "test") is Outcome.RETRY_LATER
    assert service.store.dead_letters == []


def test_a_dead_letter_is_redriven_once_its_cause_is_fixed(
    service: FakeService, inbox: Inbox
) -> None:
    inbox.process(b'{"batchref": "b2", "qty": 3, "message_id": "m5"}', "test")
    [letter] = service.store.dead_letters
    assert letter.id is not None
    with pytest.raises(Rejected, match="still cannot apply it: Unknown batch b2"):
        inbox.redrive(letter.id)

    service.bus.handle(commands.CreateBatch("b2", "LAMP", 10, None))
    assert inbox.redrive(letter.id) is Outcome.APPLIED
    assert service.store.products["LAMP"].batch("b2").purchased_quantity == 3  # type: ignore[union-attr]
    with pytest.raises(Rejected, match="already re-driven"):
        inbox.redrive(letter.id)
    with pytest.raises(Rejected, match="no dead letter 99"):
        inbox.redrive(99)


def change(qty: int, **order: object) -> bytes:
    return json.dumps({"batchref": "b1", "qty": qty, **order}).encode()


def test_a_change_older_than_the_last_one_applied_is_stale(
    service: FakeService, inbox: Inbox
) -> None:
    assert inbox.process(change(7, sequence=5), "channel") is Outcome.APPLIED
    assert inbox.process(change(3, sequence=4), "channel") is Outcome.STALE
    assert inbox.process(change(6, sequence=5), "channel") is Outcome.STALE  # not after
    assert purchased(service) == 7
    assert inbox.process(change(8, sequence=6), "channel") is Outcome.APPLIED
    assert purchased(service) == 8


def test_stream_entries_are_ordered_by_their_ids(service: FakeService, inbox: Inbox) -> None:
    assert inbox.process(change(5), "stream", "stream:200-0", "200-0") is Outcome.APPLIED
    assert inbox.process(change(4), "stream", "stream:199-9", "199-9") is Outcome.STALE
    assert inbox.process(change(6), "stream", "stream:1000-0", "1000-0") is Outcome.APPLIED
    assert purchased(service) == 6  # 1000 after 200: compared as numbers, not text


def test_the_producers_own_time_orders_changes(service: FakeService, inbox: Inbox) -> None:
    late, early = "2026-11-27T10:00:00+01:00", "2026-11-27T08:30:00Z"  # 09:00 and 08:30 UTC
    assert inbox.process(change(5, occurred_at=late), "channel") is Outcome.APPLIED
    assert inbox.process(change(9, occurred_at=early), "channel") is Outcome.STALE
    assert purchased(service) == 5


def test_a_stale_change_is_remembered_as_processed(service: FakeService, inbox: Inbox) -> None:
    inbox.process(change(5, sequence=2, message_id="m2"), "channel")
    assert inbox.process(change(4, sequence=1, message_id="m1"), "channel") is Outcome.STALE
    assert inbox.process(change(4, sequence=1, message_id="m1"), "channel") is Outcome.DUPLICATE
    assert service.store.processed == {"m1", "m2"}


def test_changes_without_a_position_always_apply(service: FakeService, inbox: Inbox) -> None:
    inbox.process(change(5, sequence=9), "channel")
    assert inbox.process(change(4), "channel") is Outcome.APPLIED
    assert purchased(service) == 4
