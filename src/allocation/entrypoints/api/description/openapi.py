"""The OpenAPI description of the HTTP API, built from the operations' declarations.

Request bodies are the JSON Schemas of the pydantic models that validate them
(`schemas.py`), answers those of the response models (`responses.py`), and
refusals come from real errors: the error table (`errors.py`) gives their
status, their messages the examples. OpenAPI 3.1 uses JSON Schema 2020-12, which
is what pydantic writes, so the schemas go in as pydantic writes them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from werkzeug.exceptions import HTTPException

from allocation import package_version
from allocation.config import Settings
from allocation.domain.exceptions import DatabaseUnavailable
from allocation.entrypoints.api import bodies, errors
from allocation.entrypoints.api.description import responses
from allocation.entrypoints.api.description.declarations import Answer, Operation
from allocation.entrypoints.api.description.operations import OPERATIONS

OPENAPI_VERSION = "3.1.0"
TITLE = "allocation"

_REF_TEMPLATE = "#/components/schemas/{model}"

DESCRIPTION = """\
Allocates customer order lines to batches of stock: warehouse stock first, then
the batch with the earliest ETA.

**Errors** are JSON `{"message": "…"}`. Invalid input is a 400 naming every
problem, and nothing is written. A write with a body must send it as
`Content-Type: application/json` (415 otherwise), at most `MAX_REQUEST_BYTES`
long (413 otherwise, whether or not it says its length). Quantities are JSON
integers (`5`, not `"5"`, `5.0` or `5e0`). Unknown keys in a body are ignored. An
unexpected failure is a 500 `{"message": "Internal server error"}`.

**Cross-origin requests:** the API sends no CORS headers, so browsers keep other
sites' pages from reading its answers, and a write needs a JSON content type,
which no plain form can send.

**Authentication** is optional: when the server runs with `API_TOKEN` set, the
writes (POST and DELETE) require `Authorization: Bearer <API_TOKEN>` and answer
401 without it; when `API_TOKEN` is unset they need no credentials. The GET
operations never need credentials.
"""

_TOKEN_NOTE = (
    " Requires `Authorization: Bearer <API_TOKEN>` only when the server has `API_TOKEN` set."
)

# What a status means, for a person reading the description.
_MEANING = {
    400: "Invalid input: the message names every problem, and nothing is written.",
    401: "The server has `API_TOKEN` set and the request does not carry it as a bearer token.",
    404: "Not found.",
    409: "Refused: it conflicts with what is there.",
    413: "The body is larger than the server's `MAX_REQUEST_BYTES` (64 KiB by default).",
    415: "A write's body must be sent as `Content-Type: application/json`.",
    503: "A service the API depends on (the database) is unavailable; retry later.",
}
_HEADER_MEANING = {
    "Retry-After": "Seconds to wait before retrying.",
    "WWW-Authenticate": "The scheme to use: `Bearer`.",
}

# What every write can meet besides its own refusals, and what every read of the database can.
_WRITE_REFUSALS: tuple[Exception, ...] = (errors.Unauthorized(), bodies.not_json("text/plain"))
_BODY_REFUSALS: tuple[Exception, ...] = (
    bodies.too_large(Settings.model_fields["max_request_bytes"].default),
)
_DATABASE_REFUSALS: tuple[Exception, ...] = (DatabaseUnavailable(),)


def build_spec() -> dict[str, Any]:
    """The OpenAPI document of the API."""
    refs, definitions = models_json_schema(_models(), ref_template=_REF_TEMPLATE)
    by_model = {model: dict(reference) for (model, _mode), reference in refs.items()}
    paths: dict[str, dict[str, Any]] = defaultdict(dict)
    for operation in OPERATIONS:
        paths[operation.path][operation.method] = _operation(operation, by_model)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "version": package_version(), "description": DESCRIPTION},
        "tags": [
            {
                "name": "allocation",
                "description": "Batches of stock and the order lines allocated to them.",
            },
            {
                "name": "orders",
                "description": "Orders' lines, allocated or waiting for stock; cancelling.",
            },
            {
                "name": "availability",
                "description": "How many units of a SKU can be promised, and when.",
            },
            {"name": "operations", "description": "Health, readiness and metrics."},
            {"name": "docs", "description": "This description."},
        ],
        "paths": dict(paths),
        "components": {"schemas": definitions["$defs"], "securitySchemes": _SECURITY_SCHEMES},
    }


_SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": (
            "The server's `API_TOKEN`. Enforced only when the server has"
            " `API_TOKEN` set; otherwise requests need no credentials."
        ),
    }
}


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(responses.Error, "serialization")]
    for operation in OPERATIONS:
        if operation.body is not None:
            models.append((operation.body, "validation"))
        models += [(a.model, "serialization") for a in operation.answers if a.model is not None]
    return list(dict.fromkeys(models))


Refs = dict[Any, dict[str, Any]]  # model -> {"$ref": …}


def _operation(operation: Operation, refs: Refs) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "tags": [operation.tag],
        "summary": operation.summary,
    }
    description = operation.description + (_TOKEN_NOTE if operation.writes else "")
    if description:
        described["description"] = description.strip()
    if operation.writes:
        described["security"] = [{"bearerAuth": []}, {}]
    if operation.parameters:
        described["parameters"] = [
            {
                "name": name,
                "in": parameter.location,
                "required": parameter.required,
                "description": parameter.description,
                "schema": parameter.schema,
                "example": parameter.example,
            }
            for name, parameter in operation.parameters.items()
        ]
    if operation.body is not None:
        media = {"schema": refs[operation.body], "example": operation.body_example}
        described["requestBody"] = {"required": True, "content": {"application/json": media}}
    answers = {str(a.status): _answer(a, refs) for a in operation.answers}
    described["responses"] = answers | _refusals(operation, refs)
    return described


def _answer(answer: Answer, refs: Refs) -> dict[str, Any]:
    described: dict[str, Any] = {"description": answer.description}
    if answer.media is not None:
        described["content"] = {answer.media: _media(answer, refs)}
    if answer.headers:
        described["headers"] = {
            name: {"description": meaning, "required": True, "schema": {"type": "string"}}
            for name, meaning in answer.headers.items()
        }
    return described


def _media(answer: Answer, refs: Refs) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {"type": "string" if answer.media != _JSON else "object"}}
    if answer.model is not None:
        media["schema"] = refs[answer.model]
    if answer.example is not None:
        media["example"] = answer.example
    return media


_JSON = "application/json"


def _refusals(operation: Operation, refs: Refs) -> dict[str, Any]:
    """One response per status the operation's refusals map to, each example a real message."""
    refusals = list(operation.refusals)
    if operation.writes:
        refusals += _WRITE_REFUSALS
    if operation.body is not None:
        refusals += _BODY_REFUSALS
    if operation.reads_the_database:
        refusals += _DATABASE_REFUSALS
    by_status: dict[int, list[Exception]] = defaultdict(list)
    for refusal in refusals:
        by_status[_status(refusal)].append(refusal)
    return {
        str(status): _refusal(status, found, refs) for status, found in sorted(by_status.items())
    }


def _status(refusal: Exception) -> int:
    if isinstance(refusal, HTTPException):
        return int(refusal.code or 500)
    return errors.status_for(type(refusal))


def _refusal(status: int, refusals: list[Exception], refs: Refs) -> dict[str, Any]:
    examples = {
        type(refusal).__name__: {"value": {"message": _message(refusal)}} for refusal in refusals
    }
    described: dict[str, Any] = {
        "description": _MEANING[status],
        "content": {_JSON: {"schema": refs[responses.Error], "examples": examples}},
    }
    headers = errors.HEADERS.get(status)
    if headers:
        described["headers"] = {
            name: {"description": _HEADER_MEANING[name], "schema": {"type": "string"}}
            for name in headers
        }
    return described


def _message(refusal: Exception) -> str:
    if isinstance(refusal, HTTPException):
        return str(refusal.description)
    return str(refusal)
