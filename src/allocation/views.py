"""The read side (CQRS): queries answered from the read models, never from an aggregate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from allocation.domain.availability import Availability
from allocation.domain.holds import HoldState
from allocation.service_layer.ports import (
    AbstractReadModel,
    MovementRecord,
    OrderLineState,
    WaitingLine,
)


def allocations(orderid: str, read_model: AbstractReadModel) -> list[dict[str, str]]:
    """The order's allocations, ordered by SKU; empty when it has none."""
    return read_model.allocations_for_order(orderid)


def availability(skus: Sequence[str], read_model: AbstractReadModel) -> list[Availability]:
    """Each known SKU's availability, in the order asked; unknown SKUs left out."""
    return read_model.availability(skus)


def order(orderid: str, read_model: AbstractReadModel) -> list[OrderLineState]:
    """Every line of the order, allocated or waiting, ordered by SKU."""
    return read_model.order_lines(orderid)


def queue(sku: str, read_model: AbstractReadModel) -> list[WaitingLine] | None:
    """The SKU's waiting lines, oldest first; None for an unknown SKU."""
    if not read_model.availability([sku]):
        return None
    return read_model.waiting_lines(sku)


def hold(holdid: str, read_model: AbstractReadModel) -> HoldState | None:
    """The hold as it stands now (expired as soon as its time is up); None when unknown."""
    return read_model.hold(holdid, datetime.now(UTC))


@dataclass(frozen=True)
class MovementsPage:
    records: list[MovementRecord]
    next_after: int | None  # where the next page starts; None on the last page


def movements(
    sku: str, after: int, limit: int, read_model: AbstractReadModel
) -> MovementsPage | None:
    """The SKU's movements after ``after``, oldest first, ``limit`` at most; None for an
    unknown SKU."""
    found = read_model.movements(sku, after, limit + 1)
    # A SKU that exists has a movement from its first batch: only an empty page asks.
    if not found and not read_model.availability([sku]):
        return None
    records = found[:limit]
    return MovementsPage(records, records[-1].movement.seq if len(found) > limit else None)
