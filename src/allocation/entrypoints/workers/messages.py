"""The message the consumer accepts, validated before anything runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from allocation.domain import commands
from allocation.entrypoints.validation import InvalidInput, Name, Quantity, Strict, parse
from allocation.service_layer.inbound import Rejected


class ChangeBatchQuantityMessage(Strict):
    batchref: Name
    qty: Quantity
    message_id: Name | None = None
    # The producer's own order, if it sends one: a change is applied only when it
    # comes after the last one applied to the batch.
    sequence: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    occurred_at: datetime | None = None

    def to_command(
        self, fallback_id: str | None = None, stream_entry: str | None = None
    ) -> commands.ChangeBatchQuantity:
        return commands.ChangeBatchQuantity(
            ref=self.batchref,
            qty=self.qty,
            message_id=self.message_id or fallback_id,
            position=self._position(stream_entry),
        )

    def _position(self, stream_entry: str | None) -> commands.Position | None:
        if self.sequence is not None:
            return commands.Position.of_sequence(self.sequence)
        if self.occurred_at is not None:
            return commands.Position.of_time(self.occurred_at)
        if stream_entry is not None:
            return commands.Position.of_stream_entry(stream_entry)
        return None


def parse_change_batch_quantity(
    data: bytes | str, fallback_id: str | None, stream_entry: str | None
) -> commands.ChangeBatchQuantity:
    """The command a change_batch_quantity message asks for (the message's own id,
    else ``fallback_id``; its own order, else its stream entry's), or Rejected naming
    everything wrong with it."""
    try:
        message = parse(ChangeBatchQuantityMessage, data)
    except InvalidInput as error:
        raise Rejected(f"malformed: {error}") from None
    return message.to_command(fallback_id, stream_entry)
