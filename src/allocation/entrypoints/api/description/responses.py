"""What the HTTP API answers: response shapes, for the OpenAPI description.

The request shapes live in `schemas.py`, where they also validate the requests.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class _Response(BaseModel):
    # Clients are told to ignore keys they do not know, so more may be added.
    model_config = ConfigDict(frozen=True)


class BatchCreated(_Response):
    ref: str = Field(description="The reference of the new batch.")


class AllocationAccepted(_Response):
    batchref: str | None = Field(
        description="The batch the order line is allocated to; null while it waits."
    )
    status: Literal["allocated", "backordered"] | None = Field(
        None, description="Sent when the request had `backorder`: what became of the line."
    )


class AllocationRow(_Response):
    sku: str
    batchref: str = Field(description="The batch that holds the order's line for this SKU.")


class Allocations(RootModel[list[AllocationRow]]):
    """The order's allocations, one per SKU, ordered by SKU."""


class Incoming(_Response):
    eta: date
    qty: int = Field(description="Units arriving then and not yet allocated.")


class Availability(_Response):
    sku: str
    version: int = Field(description="The product's version: it changes with every change.")
    available: int = Field(description="Units not allocated, over all batches.")
    in_stock: int = Field(description="Of those, units in the warehouse (batches with no ETA).")
    incoming: list[Incoming] = Field(description="Units arriving, per date, earliest first.")
    backordered: int = Field(description="Units of order lines waiting for stock.")
    held: int = Field(description="Units set aside by active holds: not counted as available.")
    can_allocate: bool | None = Field(
        None, description="With `?qty=N`: whether allocating N units now would succeed."
    )
    eta: date | None = Field(
        None,
        description="With `?qty=N`: when those units would come (null: from the warehouse).",
    )


class Availabilities(RootModel[list[Availability]]):
    """The known SKUs' availability, in the order asked."""


class OrderLine(_Response):
    sku: str
    qty: int
    status: Literal["allocated", "backordered"]
    batchref: str | None
    eta: date | None = Field(description="When the batch arrives; null in the warehouse.")


class Order(_Response):
    orderid: str
    lines: list[OrderLine] = Field(description="Ordered by SKU.")


class WaitingLine(_Response):
    orderid: str
    qty: int
    since: datetime = Field(description="When the line was first accepted: its place.")


class Backorders(RootModel[list[WaitingLine]]):
    """The SKU's waiting lines, oldest first: the order in which stock goes to them."""


class Released(_Response):
    orderid: str
    sku: str
    qty: int
    batchref: str | None = Field(description="The batch it held stock in; null if waiting.")


class ReleasedLines(RootModel[list[Released]]):
    """Every line of the order, released."""


class Hold(_Response):
    holdid: str
    sku: str
    qty: int
    batchref: str = Field(description="The batch the units are held in.")
    status: Literal["active", "confirmed", "released", "expired"] = Field(
        description="`expired` as soon as `expires_at` has passed."
    )
    expires_at: datetime = Field(description="When the units go back, unless confirmed (UTC).")
    orderid: str | None = Field(None, description="Once confirmed: the order it became a line of.")


class Movement(_Response):
    seq: int = Field(description="The SKU's movements are numbered from 1, with no gaps.")
    at: datetime
    kind: Literal[
        "batch_added", "batch_changed", "allocated", "deallocated", "hold_placed", "hold_ended"
    ]
    qty: int = Field(description="The signed change of the SKU's `available`.")
    batchref: str | None
    version: int = Field(description="The product's version after the change.")
    reason: str = Field(description="Why, within the kind (e.g. `backorder_filled`, `expired`).")
    orderid: str | None = Field(None, description="The order line concerned, if any.")
    holdid: str | None = Field(None, description="The hold concerned, if any.")
    source: dict[str, str | bool] = Field(
        description='What caused it: `{"request_id"}`, `{"message_id"}` or `{"expiry": true}`.'
    )


class Movements(_Response):
    sku: str
    movements: list[Movement] = Field(description="Oldest first.")
    next: int | None = Field(description="`?after=` for the next page; null on the last one.")


class Error(_Response):
    message: str = Field(description="What went wrong, for a person to read.")


class Health(_Response):
    status: Literal["ok"]


class ReadinessChecks(_Response):
    database: str = Field(description='"ok", or the error that reaching the database raised.')
    redis: str = Field(description='"ok", "not configured" when REDIS_URL is unset, or the error.')
    migrations: str = Field(description='"ok", or what is missing from the schema.')


class ReachedDatabase(_Response):
    host: str = Field(description="The PostgreSQL server a connection reached.")
    port: int
    primary: bool = Field(description="Whether it takes writes (false: a standby).")


class ReachedRedis(_Response):
    host: str = Field(description="The Redis master the Sentinels name.")
    port: int


class Readiness(_Response):
    status: Literal["ready", "unavailable"] = Field(
        description='"ready" (HTTP 200) when every check is fine, else "unavailable" (HTTP 503).'
    )
    checks: ReadinessChecks
    database: ReachedDatabase | None = Field(
        None, description="On PostgreSQL, when reached: which server, and its role."
    )
    redis: ReachedRedis | None = Field(
        None, description="When REDIS_URL names Sentinels and Redis was reached."
    )
