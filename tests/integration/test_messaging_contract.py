"""Outbox, processed-message and dead-letter ports: one set of tests, fakes and databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from allocation.adapters.messaging_store import (
    SqlAlchemyDeadLetters,
    SqlAlchemyOutbox,
    SqlAlchemyProcessedMessages,
)
from allocation.domain import events
from allocation.service_layer.messages import OutboxMessage, to_message
from allocation.service_layer.ports import (
    AbstractDeadLetters,
    AbstractOutbox,
    AbstractProcessedMessages,
    DeadLetter,
)
from tests.fakes import FakeDeadLetters, FakeOutbox, FakeProcessedMessages


class Ports:
    def __init__(
        self,
        outbox: AbstractOutbox,
        processed: AbstractProcessedMessages,
        dead_letters: AbstractDeadLetters,
    ) -> None:
        self.outbox = outbox
        self.processed = processed
        self.dead_letters = dead_letters


@pytest.fixture(params=["fake", "sqlite", "postgres"])
def ports(request: pytest.FixtureRequest) -> Iterator[Ports]:
    if request.param == "fake":
        yield Ports(FakeOutbox([], set()), FakeProcessedMessages(set()), FakeDeadLetters([]))
        return
    factory: sessionmaker[Session] = request.getfixturevalue(f"{request.param}_session_factory")
    with factory() as session:
        yield Ports(
            SqlAlchemyOutbox(session),
            SqlAlchemyProcessedMessages(session),
            SqlAlchemyDeadLetters(session),
        )
        session.commit()


def message(orderid: str) -> OutboxMessage:
    result = to_message(events.Allocated(orderid, "LAMP", 1, "b1"))
    assert result is not None
    return result


def test_pending_messages_come_oldest_first_with_their_payload(ports: Ports) -> None:
    first, second, third = message("o1"), message("o2"), message("o3")
    for m in (first, second, third):
        ports.outbox.add(m)
    pending = ports.outbox.pending(2)
    assert pending == [first, second]
    assert pending[0].payload["message_id"] == first.message_id
    assert pending[0].payload["orderid"] == "o1"
    assert all(m.id is not None for m in pending)


def test_sent_messages_leave_the_backlog(ports: Ports) -> None:
    for orderid in ("o1", "o2", "o3"):
        ports.outbox.add(message(orderid))
    assert ports.outbox.backlog().unsent == 3
    ports.outbox.mark_sent([m.id for m in ports.outbox.pending(2) if m.id is not None])
    assert [m.payload["orderid"] for m in ports.outbox.pending(10)] == ["o3"]
    backlog = ports.outbox.backlog()
    assert backlog.unsent == 1
    assert backlog.oldest is not None and backlog.oldest <= datetime.now(UTC)


def test_processed_ids_are_remembered(ports: Ports) -> None:
    assert not ports.processed.contains("m1")
    ports.processed.add("m1")
    assert ports.processed.contains("m1")
    assert not ports.processed.contains("m2")


def test_dead_letters_are_listed_until_redriven(ports: Ports) -> None:
    now = datetime.now(UTC)
    ports.dead_letters.add(DeadLetter(None, "channel:x", "{bad", "malformed", None, now))
    ports.dead_letters.add(DeadLetter(None, "stream:x", "{}", "unknown", "m7", now))
    first, second = ports.dead_letters.list()
    assert (first.payload, second.message_id) == ("{bad", "m7")
    assert first.id is not None
    ports.dead_letters.mark_redriven(first.id, now + timedelta(seconds=1))
    assert [letter.payload for letter in ports.dead_letters.list()] == ["{}"]
    assert len(ports.dead_letters.list(include_redriven=True)) == 2
    redriven = ports.dead_letters.get(first.id)
    assert redriven is not None and redriven.redriven_at is not None
