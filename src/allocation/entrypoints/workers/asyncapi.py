"""The AsyncAPI 3 description of the Redis messages, built from the models that make them.

Published messages are built from the domain's event dataclasses and the
envelope (`service_layer/messages.py`); the inbound message is validated by
`messages.ChangeBatchQuantityMessage`. Their JSON Schemas come from those same
classes (pydantic reads dataclasses and models alike), so the description cannot
drift from what is sent and accepted. The examples are real payloads, made by
the code that publishes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from allocation import package_version
from allocation.domain import events
from allocation.entrypoints.workers.messages import ChangeBatchQuantityMessage
from allocation.service_layer.messages import CHANNELS, INBOUND_CHANNEL, Envelope, payload_of

ASYNCAPI_VERSION = "3.0.0"

DESCRIPTION = """\
The Redis side of the allocation service.

**Published:** each event goes to the Redis pub/sub channel named below and is
appended to the Redis stream of the same name (`XADD <channel> * data <json>`,
trimmed to about `STREAM_MAXLEN` entries). The relay publishes from a
transactional outbox, in commit order, at least once: a subscriber drops a
`message_id` it has already seen. Fields may be added to a message; none is
removed, renamed or retyped.

**Consumed:** `change_batch_quantity`, from the pub/sub channel and from the
stream of that name (consumer group `allocation`, field `data`).
"""

# One real event per published message, for the examples.
EXAMPLES: dict[type[events.Event], events.Event] = {
    events.Allocated: events.Allocated("order-1", "SMALL-TABLE", 2, "batch-001"),
    events.Deallocated: events.Deallocated("order-1", "SMALL-TABLE", 2, "batch-001", "cancelled"),
    events.Backordered: events.Backordered("order-2", "SMALL-TABLE", 5),
    events.OutOfStock: events.OutOfStock("SMALL-TABLE"),
    events.SoldOut: events.SoldOut("SMALL-TABLE"),
    events.BackInStock: events.BackInStock("SMALL-TABLE", 10),
    events.BackorderCancelled: events.BackorderCancelled("order-2", "SMALL-TABLE", 5),
    events.HoldPlaced: events.HoldPlaced(
        "cart-7", "SMALL-TABLE", 1, "batch-001", datetime(2026, 11, 27, 9, 45, tzinfo=UTC)
    ),
    events.HoldEnded: events.HoldEnded("cart-7", "SMALL-TABLE", 1, "confirmed", "order-3"),
}

_INBOUND_EXAMPLE = {"batchref": "batch-001", "qty": 10, "message_id": "m-1", "sequence": 42}


def build_spec() -> dict[str, Any]:
    """The AsyncAPI document of the service's Redis messages."""
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for event_class, channel in CHANNELS.items():
        name = _message_name(channel)
        schemas[name] = published_schema(event_class)
        messages[name] = _message(name, event_class.__doc__, _example(event_class))
        _add_channel(channels, operations, channel, name, action="send")
    name = _message_name(INBOUND_CHANNEL)
    schemas[name] = inbound_schema()
    messages[name] = _message(name, _INBOUND_SUMMARY, _INBOUND_EXAMPLE)
    _add_channel(channels, operations, INBOUND_CHANNEL, name, action="receive")
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": "allocation", "version": package_version(), "description": DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {
            "redis": {
                "host": "localhost:6379",
                "protocol": "redis",
                "description": "The Redis the service is given as `REDIS_URL`.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def published_schema(event_class: type[events.Event]) -> dict[str, Any]:
    """The JSON Schema of a published message: the event's fields and the envelope's.
    Every field is always sent (the payload is the whole dataclass), except those the
    event sends only when set, which are then never null."""
    body = TypeAdapter(event_class).json_schema(mode="serialization")
    envelope = TypeAdapter(Envelope).json_schema(mode="serialization")
    properties = {**body["properties"], **envelope["properties"]}
    for name, field in properties.items():
        field.pop("default", None)
        if name in event_class.sent_only_when_set:
            field.update(_not_null(field))
    return {
        "title": _message_name(CHANNELS[event_class]),
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in event_class.sent_only_when_set],
    }


def _not_null(field: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, null]`` as ``X``: a field sent only when set is never null."""
    kinds = [kind for kind in field.pop("anyOf", []) if kind.get("type") != "null"]
    return kinds[0] if len(kinds) == 1 else {"anyOf": kinds} if kinds else {}


def inbound_schema() -> dict[str, Any]:
    """The JSON Schema of what the consumer accepts (keys it does not know are ignored)."""
    schema = ChangeBatchQuantityMessage.model_json_schema(mode="validation")
    schema["title"] = _message_name(INBOUND_CHANNEL)
    return schema


_INBOUND_SUMMARY = """\
Sets a batch's purchased quantity. Lines that no longer fit are moved to other
batches or wait for stock. A `message_id` seen before is not applied twice. A
change older, in the producer's order (`sequence`, else `occurred_at`, else
the stream entry's id), than the last one applied to the batch is recorded and
not applied. A message that cannot be applied is kept as a dead letter."""


def _message(name: str, summary: str | None, example: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "title": name,
        "summary": " ".join((summary or "").split()),
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{name}"},
        "examples": [{"payload": example}],
    }


def _add_channel(
    channels: dict[str, Any],
    operations: dict[str, Any],
    channel: str,
    message: str,
    action: str,
) -> None:
    channels[channel] = {
        "address": channel,
        "description": f"The pub/sub channel `{channel}`, and the stream of that name.",
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
    }
    verb = "publish" if action == "send" else "consume"
    operations[f"{verb}{message}"] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "messages": [{"$ref": f"#/channels/{channel}/messages/{message}"}],
    }


_EXAMPLE_ENVELOPE = Envelope(
    "0b9e4a8e-6f1d-4c1e-9a53-2f6f3c1d7e21", datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
)


def _example(event_class: type[events.Event]) -> dict[str, Any]:
    return payload_of(EXAMPLES[event_class], _EXAMPLE_ENVELOPE)


def _message_name(channel: str) -> str:
    """``line_allocated`` -> ``LineAllocated``."""
    return "".join(part.capitalize() for part in channel.split("_"))
