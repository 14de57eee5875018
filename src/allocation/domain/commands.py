"""Commands: requests for the system to do something, named in the imperative."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


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
    orderid: str
    sku: str
    qty: int


@dataclass(frozen=True)
class ChangeBatchQuantity(Command):
    ref: str
    qty: int
    message_id: str | None = None
