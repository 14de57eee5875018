"""The outbox relay's one step: publish the oldest unsent messages, then mark them sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from allocation.service_layer.ports import AbstractPublisher, Backlog
from allocation.service_layer.unit_of_work import AbstractUnitOfWork


def relay_pending(
    uow: AbstractUnitOfWork, publisher: AbstractPublisher, batch_size: int
) -> list[str]:
    """Publishes up to batch_size messages in commit order; returns their message ids.

    A message is marked sent only after the publisher accepted it, so a crash
    in between sends it again (at-least-once, same message_id).
    """
    with uow:
        messages = uow.outbox.pending(batch_size)
        if not messages:
            return []
        publisher.publish_batch([(m.channel, m.payload) for m in messages])
        uow.outbox.mark_sent([m.id for m in messages if m.id is not None])
        uow.commit()
    return [m.message_id for m in messages]


def prune_sent(uow: AbstractUnitOfWork, retention: timedelta) -> int:
    with uow:
        pruned = uow.outbox.prune(datetime.now(UTC) - retention)
        uow.commit()
    return pruned


def backlog(uow: AbstractUnitOfWork) -> Backlog:
    with uow:
        return uow.outbox.backlog()
