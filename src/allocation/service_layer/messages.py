"""External messages: which events leave the service, on which channel, in which envelope."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from allocation.domain import events

CHANNELS: dict[type[events.Event], str] = {
    events.Allocated: "line_allocated",
    events.Deallocated: "line_deallocated",
    events.Backordered: "line_backordered",
    events.OutOfStock: "out_of_stock",
    events.SoldOut: "sold_out",
    events.BackInStock: "back_in_stock",
}


@dataclass(frozen=True)
class OutboxMessage:
    """An event waiting in the outbox; ``payload`` is exactly what subscribers receive."""

    message_id: str
    channel: str
    sku: str
    payload: dict[str, Any]
    occurred_at: datetime
    id: int | None = field(default=None, compare=False)


def to_message(event: events.Event) -> OutboxMessage | None:
    """The envelope for an event that leaves the service, or None for an internal one."""
    channel = CHANNELS.get(type(event))
    if channel is None:
        return None
    message_id = str(uuid.uuid4())
    occurred_at = datetime.now(UTC)
    body = event.to_dict()
    payload = {**body, "message_id": message_id, "occurred_at": occurred_at.isoformat()}
    return OutboxMessage(message_id, channel, str(body.get("sku", "")), payload, occurred_at)
