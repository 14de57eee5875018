"""The HTTP operations, declared once: what each takes, answers and can refuse.

`openapi.py` describes the API from these declarations: request bodies from the
validating models, answers from the response models, refusals from real errors
(their messages become the examples) and the error table (their status codes).
A test checks that every route the app serves is declared here and vice versa.
"""

from __future__ import annotations

from pydantic import TypeAdapter

from allocation.domain import exceptions
from allocation.entrypoints import validation
from allocation.entrypoints.api import schemas
from allocation.entrypoints.api.description import responses
from allocation.entrypoints.api.description.declarations import (
    BAD_QUANTITY,
    PATH_NAME,
    SKU,
    Answer,
    Operation,
    Parameter,
)
from allocation.entrypoints.api.description.hold_operations import HOLD_OPERATIONS
from allocation.entrypoints.api.errors import NoAllocations, NoLines, UnknownSku

_TOO_LONG = validation.InvalidInput(
    f"orderid: String should have at most {validation.MAX_NAME_LENGTH} characters"
)
_ORDERID = Parameter(
    PATH_NAME,
    "The order id, percent-encoded (`/` as `%2F`). A path's trailing `/` is dropped"
    " (308 to the path without it), so an id here cannot end with `/`.",
    "order-1",
)
_SKU_TOO_LONG = validation.InvalidInput(
    f"sku: String should have at most {validation.MAX_NAME_LENGTH} characters"
)
_SKU_SEGMENT = Parameter(
    schemas.segment.json_schema(), "The SKU: the last path segment.", "SMALL-TABLE"
)
_QTY = Parameter(
    TypeAdapter(validation.PositiveQuantity).json_schema(),
    "Also answer whether N units could be allocated now, and when they would come.",
    2,
    location="query",
    required=False,
)
_SKUS = Parameter(
    {
        "type": "array",
        "items": TypeAdapter(validation.Name).json_schema(),
        "minItems": 1,
        "maxItems": schemas.MAX_SKUS,
    },
    f"The SKUs, as `?sku=A&sku=B` (1 to {schemas.MAX_SKUS}).",
    ["SMALL-TABLE", "BLUE-VASE"],
    location="query",
)
_AVAILABILITY_EXAMPLE = {
    "sku": "SMALL-TABLE",
    "version": 7,
    "available": 15,
    "in_stock": 5,
    "incoming": [{"eta": "2026-12-01", "qty": 10}],
    "backordered": 3,
    "held": 2,
}
_RELEASED_EXAMPLE = {"orderid": "order-1", "sku": "SMALL-TABLE", "qty": 2, "batchref": "batch-001"}

_ORDER_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "delete",
        "/allocations/{orderid}/{sku}",
        "cancelLine",
        "orders",
        "Cancel one line of an order",
        (Answer(200, "The line is released.", responses.Released, _RELEASED_EXAMPLE),),
        description=(
            "Releases the order's line for the SKU, allocated or waiting. Its stock goes"
            " to the SKU's waiting lines in the same transaction; the line is not"
            " allocated again. The SKU is the last path segment (a SKU holding `/`"
            " cannot be named here: cancel its order)."
        ),
        refusals=(_TOO_LONG, exceptions.UnknownLine("order-1", "SMALL-TABLE")),
        parameters={"orderid": _ORDERID, "sku": _SKU_SEGMENT},
        writes=True,
    ),
    Operation(
        "delete",
        "/orders/{orderid}",
        "cancelOrder",
        "orders",
        "Cancel an order",
        (
            Answer(
                200,
                "Every line of the order, released.",
                responses.ReleasedLines,
                [_RELEASED_EXAMPLE],
            ),
        ),
        description="Releases every line of the order, allocated or waiting, in one change.",
        refusals=(_TOO_LONG, exceptions.UnknownOrder("order-1")),
        parameters={"orderid": _ORDERID},
        writes=True,
    ),
    Operation(
        "get",
        "/orders/{orderid}",
        "getOrder",
        "orders",
        "An order's lines: allocated or waiting",
        (
            Answer(
                200,
                "Every line of the order, ordered by SKU.",
                responses.Order,
                {
                    "orderid": "order-1",
                    "lines": [
                        {
                            "sku": "BLUE-VASE",
                            "qty": 1,
                            "status": "backordered",
                            "batchref": None,
                            "eta": None,
                        },
                        {
                            "sku": "SMALL-TABLE",
                            "qty": 2,
                            "status": "allocated",
                            "batchref": "batch-001",
                            "eta": "2026-12-01",
                        },
                    ],
                },
            ),
        ),
        refusals=(_TOO_LONG, NoLines("order-1")),
        parameters={"orderid": _ORDERID},
    ),
    Operation(
        "get",
        "/backorders/{sku}",
        "getBackorders",
        "orders",
        "The lines waiting for a SKU's stock",
        (
            Answer(
                200,
                "The waiting lines, oldest first: the order stock goes to them.",
                responses.Backorders,
                [{"orderid": "order-1", "qty": 3, "since": "2026-11-27T10:15:00.123456+00:00"}],
            ),
        ),
        refusals=(_SKU_TOO_LONG, UnknownSku("SMALL-TABLE")),
        parameters={"sku": SKU},
    ),
)

_AVAILABILITY_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/availability/{sku}",
        "getAvailability",
        "availability",
        "How many units of a SKU, and when",
        (
            Answer(
                200,
                "The SKU's availability.",
                responses.Availability,
                _AVAILABILITY_EXAMPLE | {"can_allocate": True, "eta": "2026-12-01"},
                headers={"ETag": "The product's version; send it as `If-None-Match`."},
            ),
            Answer(304, "Not modified since the version given in `If-None-Match`.", media=None),
        ),
        description=(
            "`available` counts units neither allocated nor held, over all batches,"
            " `in_stock` those in the warehouse, `incoming` those arriving, per date;"
            " `held` the units active holds set aside. With `?qty=N`, also"
            " what allocating N units now would do: `can_allocate`, and `eta` (null:"
            " from the warehouse now)."
        ),
        refusals=(validation.InvalidInput("qty: Input should be a whole number"), UnknownSku("X")),
        parameters={"sku": SKU, "qty": _QTY},
    ),
    Operation(
        "get",
        "/availability",
        "getAvailabilities",
        "availability",
        "Availability of several SKUs",
        (
            Answer(
                200,
                "The known SKUs' availability, in the order asked; unknown ones left out.",
                responses.Availabilities,
                [_AVAILABILITY_EXAMPLE],
            ),
        ),
        refusals=(validation.InvalidInput(f"sku: give between 1 and {schemas.MAX_SKUS} (got 0)"),),
        parameters={"sku": _SKUS, "qty": _QTY},
    ),
)

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
        refusals=(BAD_QUANTITY, exceptions.DuplicateBatch("batch-001")),
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
                "The line is allocated or, with `backorder`, waits for stock.",
                responses.AllocationAccepted,
                {"batchref": "batch-001"},
                headers={
                    "Location": (
                        "`/allocations/<orderid>` for an allocated line,"
                        " `/orders/<orderid>` for a waiting one."
                    )
                },
            ),
        ),
        description=(
            "Allocates the line to the best batch of its SKU. Allocating the same line"
            " again (same order, SKU and qty) answers 202 with what it already has"
            ' and changes nothing. With `"backorder": true`, a line no batch can take'
            ' is kept waiting (`{"batchref": null, "status": "backordered"}`) and'
            " is allocated, oldest first, as soon as stock for it comes; the answer then"
            " always says `status`."
        ),
        body=schemas.AllocateRequest,
        body_example={"orderid": "order-1", "sku": "SMALL-TABLE", "qty": 2, "backorder": True},
        refusals=(
            BAD_QUANTITY,
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
        refusals=(_TOO_LONG, NoAllocations("order-1")),
        parameters={"orderid": _ORDERID},
    ),
    *_ORDER_OPERATIONS,
    *_AVAILABILITY_OPERATIONS,
    *HOLD_OPERATIONS,
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
                    "database": {"host": "10.0.0.12", "port": 5432, "primary": True},
                    "redis": {"host": "10.0.0.21", "port": 6379},
                },
            ),
            Answer(
                503,
                "Not ready; `checks` says which dependency is not fine.",
                responses.Readiness,
                {
                    "status": "unavailable",
                    "checks": {
                        "database": "ok",
                        "redis": "unreachable: ConnectionError",
                        "migrations": "the database schema is not migrated (at revision 0005,"
                        " this code needs 0006, at postgresql+psycopg2://allocation:***@db/"
                        "allocation): run `allocation migrate`",
                    },
                },
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
        "/",
        "home",
        "docs",
        "The API's home: a redirect to its docs page",
        (
            Answer(
                302,
                "To `/docs`.",
                media=None,
                headers={"Location": "`/docs`, the docs page."},
            ),
        ),
    ),
    Operation(
        "get",
        "/asyncapi.json",
        "asyncapi",
        "docs",
        "The AsyncAPI 3 description of the Redis messages, published and consumed",
        (Answer(200, "The AsyncAPI document."),),
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
