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
    events.BackorderCancelled: "backorder_cancelled",
    events.HoldPlaced: "hold_placed",
    events.HoldEnded: "hold_ended",
}


# The channel (and stream) the service takes commands from.
INBOUND_CHANNEL = "change_batch_quantity"


@dataclass(frozen=True)
class Envelope:
    """What every published message carries besides its event's fields."""

    message_id: str  # a UUID, new for each message: a subscriber drops one it has seen
    occurred_at: datetime  # when the change was committed (UTC)

    def to_dict(self) -> dict[str, str]:
        return {"message_id": self.message_id, "occurred_at": self.occurred_at.isoformat()}


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
    envelope = Envelope(str(uuid.uuid4()), datetime.now(UTC))
    payload = payload_of(event, envelope)
    sku = str(payload.get("sku", ""))
    return OutboxMessage(envelope.message_id, channel, sku, payload, envelope.occurred_at)


def payload_of(event: events.Event, envelope: Envelope) -> dict[str, Any]:
    """What subscribers receive: the event's fields (moments in ISO 8601), then the
    envelope's."""
    fields = {
        name: value.isoformat() if isinstance(value, datetime) else value
        for name, value in event.to_dict().items()
    }
    return {**fields, **envelope.to_dict()}
