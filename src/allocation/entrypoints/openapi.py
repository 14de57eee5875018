"""The OpenAPI description of the HTTP API, and the routes that serve it and its docs page.

The request schemas are the JSON Schemas of the pydantic models that validate the
requests (`schemas.py`), so the description cannot drift from the validation.
OpenAPI 3.1 uses JSON Schema 2020-12, which is what pydantic writes, so they go
in as pydantic writes them: no conversion step that could get one of them wrong.

The docs page is Swagger UI, served from the files of the `flask-swagger-ui`
package: it loads nothing from other hosts and works offline.
"""

from __future__ import annotations

import html
import json
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, send_from_directory, url_for
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from allocation.entrypoints import responses, schemas

OPENAPI_VERSION = "3.1.0"
TITLE = "allocation"

_REF_TEMPLATE = "#/components/schemas/{model}"

_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (schemas.AddBatchRequest, "validation"),
    (schemas.AllocateRequest, "validation"),
    (responses.BatchCreated, "serialization"),
    (responses.AllocationAccepted, "serialization"),
    (responses.Allocations, "serialization"),
    (responses.Error, "serialization"),
    (responses.Health, "serialization"),
    (responses.Readiness, "serialization"),
]

DESCRIPTION = """\
Allocates customer order lines to batches of stock: warehouse stock first, then
the batch with the earliest ETA.

**Errors** are JSON `{"message": "…"}`. Invalid input is a 400 naming every
problem, and nothing is written. Quantities are JSON integers (`5`, not `"5"`,
`5.0` or `5e0`). Unknown keys in a body are ignored. An unexpected failure is a
500 `{"message": "Internal server error"}`.

**Authentication** is optional: when the server runs with `API_TOKEN` set, the
POST operations require `Authorization: Bearer <API_TOKEN>` and answer 401
without it; when `API_TOKEN` is unset they need no credentials. The GET
operations never need credentials.
"""

_TOKEN_NOTE = (
    " Requires `Authorization: Bearer <API_TOKEN>` only when the server has `API_TOKEN` set."
)

# Served from the package's Swagger UI distribution under /docs/assets/.
_VENDOR_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "index.css",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)
_INITIALIZER = "swagger-initializer.js"

# The docs page may load only what this server serves (Swagger UI sets inline styles).
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def build_spec() -> dict[str, Any]:
    """The OpenAPI document of the API, built from the request and response models."""
    refs, definitions = models_json_schema(_MODELS, ref_template=_REF_TEMPLATE)

    by_model = {model: reference for (model, _mode), reference in refs.items()}

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return dict(by_model[model])

    def json_body(model: type[BaseModel], example: Any = None) -> dict[str, Any]:
        media: dict[str, Any] = {"schema": ref(model)}
        if example is not None:
            media["example"] = example
        return {"application/json": media}

    def error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
        described: dict[str, Any] = {
            "description": description,
            "content": json_body(responses.Error),
        }
        if headers:
            described["headers"] = headers
        return described

    too_large = error(
        "The body is larger than the server's `MAX_REQUEST_BYTES` (64 KiB by default)."
    )
    unauthorized = error(
        "The server has `API_TOKEN` set and the request does not carry it as a bearer token.",
        {
            "WWW-Authenticate": {
                "description": "The scheme to use: `Bearer`.",
                "schema": {"type": "string"},
            }
        },
    )
    unavailable = error(
        "A service the API depends on (the database) is unavailable; retry later.",
        {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "string"},
            }
        },
    )
    bad_body = (
        "Invalid input; the message names every problem, "
        "e.g. `qty: Input should be greater than 0`."
    )

    paths: dict[str, Any] = {
        "/add_batch": {
            "post": {
                "operationId": "addBatch",
                "tags": ["allocation"],
                "summary": "Add a batch of stock",
                "description": "A batch arrives: `eta` null (or absent) for warehouse stock."
                + _TOKEN_NOTE,
                "security": [{"bearerAuth": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": json_body(
                        schemas.AddBatchRequest,
                        {"ref": "batch-001", "sku": "SMALL-TABLE", "qty": 20, "eta": None},
                    ),
                },
                "responses": {
                    "201": {
                        "description": "The batch was added.",
                        "content": json_body(responses.BatchCreated, {"ref": "batch-001"}),
                    },
                    "400": error(bad_body + " Nothing is written."),
                    "401": unauthorized,
                    "409": error("A batch with this reference exists."),
                    "413": too_large,
                    "503": unavailable,
                },
            }
        },
        "/allocate": {
            "post": {
                "operationId": "allocate",
                "tags": ["allocation"],
                "summary": "Allocate an order line",
                "description": (
                    "Allocates the line to the best batch of its SKU. Allocating the same line"
                    " again (same order, SKU and qty) answers 202 with the batch it already has"
                    " and changes nothing." + _TOKEN_NOTE
                ),
                "security": [{"bearerAuth": []}, {}],
                "requestBody": {
                    "required": True,
                    "content": json_body(
                        schemas.AllocateRequest,
                        {"orderid": "order-1", "sku": "SMALL-TABLE", "qty": 2},
                    ),
                },
                "responses": {
                    "202": {
                        "description": "The line is allocated.",
                        "headers": {
                            "Location": {
                                "description": "`/allocations/<orderid>`, the order's allocations.",
                                "required": True,
                                "schema": {"type": "string"},
                            }
                        },
                        "content": json_body(
                            responses.AllocationAccepted, {"batchref": "batch-001"}
                        ),
                    },
                    "400": error(bad_body + " Also `Invalid sku <sku>` when no batch has the SKU."),
                    "401": unauthorized,
                    "409": error(
                        "`Out of stock for sku <sku>`, or the order already has this SKU with"
                        " another quantity."
                    ),
                    "413": too_large,
                    "503": unavailable,
                },
            }
        },
        "/allocations/{orderid}": {
            "get": {
                "operationId": "getAllocations",
                "tags": ["allocation"],
                "summary": "The allocations of an order",
                "parameters": [
                    {
                        "name": "orderid",
                        "in": "path",
                        "required": True,
                        "description": "The order id, percent-encoded (`/` as `%2F`).",
                        "schema": TypeAdapter(schemas.Name).json_schema(),
                        "example": "order-1",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "One row per SKU of the order, ordered by SKU.",
                        "content": json_body(
                            responses.Allocations, [{"sku": "SMALL-TABLE", "batchref": "batch-001"}]
                        ),
                    },
                    "400": error(
                        "The order id is not valid (empty, too long, or has control characters)."
                    ),
                    "404": error("The order has no allocations."),
                    "503": unavailable,
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "tags": ["operations"],
                "summary": "Liveness: the process answers",
                "responses": {
                    "200": {
                        "description": "Alive.",
                        "content": json_body(responses.Health, {"status": "ok"}),
                    }
                },
            }
        },
        "/ready": {
            "get": {
                "operationId": "ready",
                "tags": ["operations"],
                "summary": "Readiness: the database, Redis and the schema migrations are fine",
                "responses": {
                    "200": {
                        "description": "Ready to serve.",
                        "content": json_body(
                            responses.Readiness,
                            {
                                "status": "ready",
                                "checks": {"database": "ok", "redis": "ok", "migrations": "ok"},
                            },
                        ),
                    },
                    "503": {
                        "description": "Not ready; `checks` says which dependency is not fine.",
                        "content": json_body(responses.Readiness),
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "summary": "Metrics in the Prometheus text exposition format",
                "responses": {
                    "200": {
                        "description": "The metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["docs"],
                "summary": "This OpenAPI description",
                "responses": {
                    "200": {
                        "description": "The OpenAPI document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/docs": {
            "get": {
                "operationId": "docs",
                "tags": ["docs"],
                "summary": "This description as a web page (Swagger UI, served locally)",
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }

    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "version": _version(), "description": DESCRIPTION},
        "tags": [
            {
                "name": "allocation",
                "description": "Batches of stock and the order lines allocated to them.",
            },
            {"name": "operations", "description": "Health, readiness and metrics."},
            {"name": "docs", "description": "This description."},
        ],
        "paths": paths,
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": (
                        "The server's `API_TOKEN`. Enforced only when the server has"
                        " `API_TOKEN` set; otherwise requests need no credentials."
                    ),
                }
            },
        },
    }


def register_docs(app: Flask) -> None:
    """Adds `/openapi.json`, the docs page `/docs`, and the page's assets under `/docs/assets/`."""
    spec = json.dumps(build_spec())
    vendor = _swagger_ui_dist()

    @app.get("/openapi.json", endpoint="openapi_json")
    def openapi_json() -> Response:
        return app.response_class(spec, mimetype="application/json")

    @app.get("/docs", endpoint="docs")
    def docs() -> Response:
        def asset(name: str) -> str:
            return html.escape(url_for("docs_asset", name=name))

        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{html.escape(TITLE)} API</title>
  <link rel="stylesheet" href="{asset("index.css")}">
  <link rel="stylesheet" href="{asset("swagger-ui.css")}">
  <link rel="icon" type="image/png" href="{asset("favicon-32x32.png")}" sizes="32x32">
  <link rel="icon" type="image/png" href="{asset("favicon-16x16.png")}" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{asset("swagger-ui-bundle.js")}"></script>
  <script src="{asset(_INITIALIZER)}"></script>
</body>
</html>
"""
        response = app.response_class(page, mimetype="text/html")
        response.headers["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
        return response

    @app.get("/docs/assets/<name>", endpoint="docs_asset")
    def docs_asset(name: str) -> Response:
        if name == _INITIALIZER:
            return app.response_class(
                _initializer(url_for("openapi_json")), mimetype="text/javascript"
            )
        if name not in _VENDOR_ASSETS:
            abort(404)
        return send_from_directory(vendor, name)


def _initializer(spec_url: str) -> str:
    # validatorUrl null: by default Swagger UI sends the spec to an online validator.
    config = {"url": spec_url, "dom_id": "#swagger-ui", "deepLinking": True, "validatorUrl": None}
    return (
        'window.addEventListener("load", function () {\n'
        f"  window.ui = SwaggerUIBundle({json.dumps(config)});\n"
        "});\n"
    )


def _swagger_ui_dist() -> Path:
    """The Swagger UI distribution files shipped by the `flask-swagger-ui` package."""
    dist = Path(str(resources.files("flask_swagger_ui") / "dist"))
    missing = sorted(name for name in _VENDOR_ASSETS if not (dist / name).is_file())
    if missing:
        raise RuntimeError(f"Swagger UI files missing from {dist}: {', '.join(missing)}")
    return dist


def _version() -> str:
    try:
        return metadata.version("allocation")
    except metadata.PackageNotFoundError:
        return "0.0.0"
