"""The HTTP operations, declared once: what each takes, answers and can refuse.

`openapi.py` describes the API from these declarations: request bodies from the
validating models, answers from the response models, refusals from real errors
(their messages become the examples) and the error table (their status codes).
A test checks that every route the app serves is declared here and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter

from allocation.domain import exceptions
from allocation.entrypoints import responses, schemas
from allocation.entrypoints.errors import NoAllocations


@dataclass(frozen=True)
class Answer:
    """A success response: its status, and the model (or media type) of its body."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    example: Any = None
    media: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)  # name -> description


@dataclass(frozen=True)
class PathParameter:
    schema: dict[str, Any]
    description: str
    example: str


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    answers: tuple[Answer, ...]
    description: str = ""
    body: type[BaseModel] | None = None
    body_example: Any = None
    refusals: tuple[Exception, ...] = ()  # the errors it answers, with typical messages
    path_parameters: dict[str, PathParameter] = field(default_factory=dict)
    writes: bool = False  # a write: bearer token, body size limit, the database

    @property
    def reads_the_database(self) -> bool:
        return self.writes or self.tag == "allocation"


_BAD_QTY = schemas.InvalidInput("qty: Input should be greater than 0")
_ORDERID = TypeAdapter(schemas.Name).json_schema()

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/add_batch",
        "addBatch",
        "allocation",
        "Add a batch of stock",
        (Answer(201, "The batch was added.", responses.BatchCreated, {"ref": "batch-001"}),),
        description="A batch arrives: `eta` null (or absent) for warehouse stock.",
        body=schemas.AddBatchRequest,
        body_example={"ref": "batch-001", "sku": "SMALL-TABLE", "qty": 20, "eta": None},
        refusals=(_BAD_QTY, exceptions.DuplicateBatch("batch-001")),
        writes=True,
    ),
    Operation(
        "post",
        "/allocate",
        "allocate",
        "allocation",
        "Allocate an order line",
        (
            Answer(
                202,
                "The line is allocated.",
                responses.AllocationAccepted,
                {"batchref": "batch-001"},
                headers={"Location": "`/allocations/<orderid>`, the order's allocations."},
            ),
        ),
        description=(
            "Allocates the line to the best batch of its SKU. Allocating the same line"
            " again (same order, SKU and qty) answers 202 with the batch it already has"
            " and changes nothing."
        ),
        body=schemas.AllocateRequest,
        body_example={"orderid": "order-1", "sku": "SMALL-TABLE", "qty": 2},
        refusals=(
            _BAD_QTY,
            exceptions.InvalidSku("SMALL-TABLE"),
            exceptions.OutOfStockError("SMALL-TABLE"),
            exceptions.LineConflict("order-1", "SMALL-TABLE", 3),
        ),
        writes=True,
    ),
    Operation(
        "get",
        "/allocations/{orderid}",
        "getAllocations",
        "allocation",
        "The allocations of an order",
        (
            Answer(
                200,
                "One row per SKU of the order, ordered by SKU.",
                responses.Allocations,
                [{"sku": "SMALL-TABLE", "batchref": "batch-001"}],
            ),
        ),
        refusals=(
            schemas.InvalidInput("orderid: String should have at most 255 characters"),
            NoAllocations("order-1"),
        ),
        path_parameters={
            "orderid": PathParameter(
                _ORDERID, "The order id, percent-encoded (`/` as `%2F`).", "order-1"
            )
        },
    ),
    Operation(
        "get",
        "/health",
        "health",
        "operations",
        "Liveness: the process answers",
        (Answer(200, "Alive.", responses.Health, {"status": "ok"}),),
    ),
    Operation(
        "get",
        "/ready",
        "ready",
        "operations",
        "Readiness: the database, Redis and the schema migrations are fine",
        (
            Answer(
                200,
                "Ready to serve.",
                responses.Readiness,
                {
                    "status": "ready",
                    "checks": {"database": "ok", "redis": "ok", "migrations": "ok"},
                },
            ),
            Answer(
                503,
                "Not ready; `checks` says which dependency is not fine.",
                responses.Readiness,
            ),
        ),
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "operations",
        "Metrics in the Prometheus text exposition format",
        (Answer(200, "The metrics.", media="text/plain"),),
    ),
    Operation(
        "get",
        "/openapi.json",
        "openapi",
        "docs",
        "This OpenAPI description",
        (Answer(200, "The OpenAPI document."),),
    ),
    Operation(
        "get",
        "/docs",
        "docs",
        "docs",
        "This description as a web page (Swagger UI, served locally)",
        (Answer(200, "The page.", media="text/html"),),
    ),
)
