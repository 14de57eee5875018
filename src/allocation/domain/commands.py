"""Commands: requests for the system to do something, named in the imperative."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal


class Command:
    """Base class: a command has exactly one handler, and its errors reach the caller."""


@dataclass(frozen=True)
class CreateBatch(Command):
    ref: str
    sku: str
    qty: int
    eta: date | None = None


@dataclass(frozen=True)
class Allocate(Command):
    """Allocates an order line; with ``backorder``, one no batch can take waits for stock."""

    orderid: str
    sku: str
    qty: int
    backorder: bool = False


@dataclass(frozen=True)
class CancelLine(Command):
    """Releases the order's line for the SKU, allocated or waiting."""

    orderid: str
    sku: str


@dataclass(frozen=True)
class CancelOrder(Command):
    """Releases every line of the order."""

    orderid: str


@dataclass(frozen=True)
class PlaceHold(Command):
    """Sets stock aside for a checkout for ``ttl_seconds``; ``holdid`` is the client's."""

    holdid: str
    sku: str
    qty: int
    ttl_seconds: int


@dataclass(frozen=True)
class ExtendHold(Command):
    """Moves an active hold's expiry to ``ttl_seconds`` from now."""

    holdid: str
    ttl_seconds: int


@dataclass(frozen=True)
class ReleaseHold(Command):
    """Gives an active hold's units back."""

    holdid: str


@dataclass(frozen=True)
class ConfirmHold(Command):
    """Turns an active hold into order ``orderid``'s line, in the hold's batch."""

    holdid: str
    orderid: str


@dataclass(frozen=True)
class ExpireHolds(Command):
    """Ends the SKU's holds whose time has run out."""

    sku: str


@dataclass(frozen=True)
class Position:
    """Where a change stands in its producer's order. Positions compare only within one
    kind; a change of another kind than the last one counts as newer."""

    kind: Literal["sequence", "occurred_at", "stream"]
    key: str  # sorts in the producer's order, within the kind

    @classmethod
    def of_sequence(cls, number: int) -> Position:
        return cls("sequence", f"{number:020d}")

    @classmethod
    def of_time(cls, moment: datetime) -> Position:
        utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
        return cls("occurred_at", utc.strftime("%Y-%m-%dT%H:%M:%S.%f"))

    @classmethod
    def of_stream_entry(cls, entry_id: str) -> Position:
        """A Redis stream entry id, "<milliseconds>-<sequence>"."""
        milliseconds, _, number = entry_id.partition("-")
        return cls("stream", f"{int(milliseconds):020d}-{int(number or 0):020d}")

    def is_after(self, other: Position) -> bool:
        return self.kind != other.kind or self.key > other.key


@dataclass(frozen=True)
class ChangeBatchQuantity(Command):
    """Sets a batch's quantity. Given a position, it is applied only if it comes after the
    last change applied to the batch: "the batch now holds N" means the last N wins."""

    ref: str
    qty: int
    message_id: str | None = None
    position: Position | None = None
