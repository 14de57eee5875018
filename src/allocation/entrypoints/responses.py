"""What the HTTP API answers: response shapes, for the OpenAPI description.

The request shapes live in `schemas.py`, where they also validate the requests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class _Response(BaseModel):
    # Clients are told to ignore keys they do not know, so more may be added.
    model_config = ConfigDict(frozen=True)


class BatchCreated(_Response):
    ref: str = Field(description="The reference of the new batch.")


class AllocationAccepted(_Response):
    batchref: str = Field(description="The batch the order line is allocated to.")


class AllocationRow(_Response):
    sku: str
    batchref: str = Field(description="The batch that holds the order's line for this SKU.")


class Allocations(RootModel[list[AllocationRow]]):
    """The order's allocations, one per SKU, ordered by SKU."""


class Error(_Response):
    message: str = Field(description="What went wrong, for a person to read.")


class Health(_Response):
    status: Literal["ok"]


class ReadinessChecks(_Response):
    database: str = Field(description='"ok", or the error that reaching the database raised.')
    redis: str = Field(description='"ok", "not configured" when REDIS_URL is unset, or the error.')
    migrations: str = Field(description='"ok", or what is missing from the schema.')


class Readiness(_Response):
    status: Literal["ready", "unavailable"] = Field(
        description='"ready" (HTTP 200) when every check is fine, else "unavailable" (HTTP 503).'
    )
    checks: ReadinessChecks
