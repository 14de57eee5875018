"""Outbox, processed-message and dead-letter ports: one set of tests, fakes and databases.

Each step runs in a Unit of Work of its own and commits, as the service uses them:
writes through the ports reach the database at commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from allocation.domain import events
from allocation.domain.commands import Position
from allocation.service_layer.messages import OutboxMessage, to_message
from allocation.service_layer.ports import DeadLetter
from allocation.service_layer.unit_of_work import AbstractUnitOfWork
from tests.integration.conftest import UnitOfWorkFactory


@contextmanager
def committed(uow_factory: UnitOfWorkFactory) -> Iterator[AbstractUnitOfWork]:
    with uow_factory() as uow:
        yield uow
        uow.commit()


def message(orderid: str) -> OutboxMessage:
    result = to_message(events.Allocated(orderid, "LAMP", 1, "b1"))
    assert result is not None
    return result


def test_pending_messages_come_oldest_first_with_their_payload(
    uow_factory: UnitOfWorkFactory,
) -> None:
    first, second, third = message("o1"), message("o2"), message("o3")
    with committed(uow_factory) as uow:
        for m in (first, second, third):
            uow.outbox.add(m)
    with committed(uow_factory) as uow:
        pending = uow.outbox.pending(2)
    assert pending == [first, second]
    assert pending[0].payload["message_id"] == first.message_id
    assert pending[0].payload["orderid"] == "o1"
    assert all(m.id is not None for m in pending)


def test_sent_messages_leave_the_backlog(uow_factory: UnitOfWorkFactory) -> None:
    with committed(uow_factory) as uow:
        for orderid in ("o1", "o2", "o3"):
            uow.outbox.add(message(orderid))
    with committed(uow_factory) as uow:
        assert uow.outbox.backlog().unsent == 3
        uow.outbox.mark_sent([m.id for m in uow.outbox.pending(2) if m.id is not None])
    with committed(uow_factory) as uow:
        assert [m.payload["orderid"] for m in uow.outbox.pending(10)] == ["o3"]
        backlog = uow.outbox.backlog()
    assert backlog.unsent == 1
    assert backlog.oldest is not None and backlog.oldest <= datetime.now(UTC)


def test_processed_ids_are_remembered(uow_factory: UnitOfWorkFactory) -> None:
    with committed(uow_factory) as uow:
        assert not uow.processed_messages.contains("m1")
        uow.processed_messages.add("m1")
    with committed(uow_factory) as uow:
        assert uow.processed_messages.contains("m1")
        assert not uow.processed_messages.contains("m2")


def test_nothing_written_without_commit(uow_factory: UnitOfWorkFactory) -> None:
    with uow_factory() as uow:
        uow.outbox.add(message("o1"))
        uow.processed_messages.add("m1")
    with committed(uow_factory) as uow:
        assert uow.outbox.pending(10) == []
        assert not uow.processed_messages.contains("m1")


def test_dead_letters_are_listed_until_redriven(uow_factory: UnitOfWorkFactory) -> None:
    now = datetime.now(UTC)
    with committed(uow_factory) as uow:
        uow.dead_letters.add(DeadLetter(None, "channel:x", "{bad", "malformed", None, now))
        uow.dead_letters.add(DeadLetter(None, "stream:x", "{}", "unknown", "m7", now))
    with committed(uow_factory) as uow:
        first, second = uow.dead_letters.list()
        assert (first.payload, second.message_id) == ("{bad", "m7")
        assert first.id is not None
        uow.dead_letters.mark_redriven(first.id, now + timedelta(seconds=1))
    with committed(uow_factory) as uow:
        assert [letter.payload for letter in uow.dead_letters.list()] == ["{}"]
        assert len(uow.dead_letters.list(include_redriven=True)) == 2
        redriven = uow.dead_letters.get(first.id)
    assert redriven is not None and redriven.redriven_at is not None


def test_the_last_change_position_is_kept_per_batch(uow_factory: UnitOfWorkFactory) -> None:
    first, later = Position.of_sequence(3), Position.of_stream_entry("1700000000000-2")
    with committed(uow_factory) as uow:
        assert uow.change_positions.last("b1") is None
        uow.change_positions.record("b1", first)
        uow.change_positions.record("b2", later)
    with committed(uow_factory) as uow:
        assert uow.change_positions.last("b1") == first
        uow.change_positions.record("b1", later)
    with committed(uow_factory) as uow:
        assert (uow.change_positions.last("b1"), uow.change_positions.last("b2")) == (later, later)
