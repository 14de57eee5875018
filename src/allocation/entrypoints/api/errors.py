"""The one table that maps errors to HTTP status codes, and the JSON error responses."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from allocation.domain import exceptions
from allocation.entrypoints.validation import InvalidInput

logger = logging.getLogger(__name__)


class NoAllocations(LookupError):
    """The order has no allocations (or is unknown)."""

    def __init__(self, orderid: str) -> None:
        super().__init__(f"No allocations for order {orderid}")


class NoLines(LookupError):
    """The order has no lines, allocated or waiting (or is unknown)."""

    def __init__(self, orderid: str) -> None:
        super().__init__(f"Order {orderid} has no lines")


class UnknownSku(LookupError):
    """No batch of the SKU was ever added."""

    def __init__(self, sku: str) -> None:
        super().__init__(f"Unknown SKU {sku}")


class Unauthorized(Exception):
    """The request lacks the bearer token this deployment requires."""

    def __init__(self) -> None:
        super().__init__("A valid 'Authorization: Bearer <token>' header is required")


STATUS_CODES: dict[type[Exception], int] = {
    InvalidInput: 400,
    Unauthorized: 401,
    NoAllocations: 404,
    NoLines: 404,
    UnknownSku: 404,
    exceptions.InvalidSku: 400,
    exceptions.UnknownBatch: 404,
    exceptions.UnknownLine: 404,
    exceptions.UnknownOrder: 404,
    exceptions.UnknownHold: 404,
    exceptions.HoldConflict: 409,
    exceptions.OutOfStockError: 409,
    exceptions.DuplicateBatch: 409,
    exceptions.LineConflict: 409,
    exceptions.ConcurrencyConflict: 409,
    exceptions.InfrastructureUnavailable: 503,
}

# Seconds a client should wait before retrying a 503.
RETRY_AFTER_SECONDS = 2


def status_for(error: type[Exception]) -> int:
    """The status an error is answered with (the table's entry for it or a base class)."""
    return next(status for kind, status in STATUS_CODES.items() if issubclass(error, kind))


def error_response(message: str, status: int) -> tuple[Response, int]:
    return jsonify(message=message), status


def register(app: Flask) -> None:
    for error_class, status in STATUS_CODES.items():
        app.register_error_handler(error_class, _known(status))
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


# Headers an error status always carries: how to retry, how to authenticate.
HEADERS: dict[int, dict[str, str]] = {
    401: {"WWW-Authenticate": 'Bearer realm="allocation"'},
    503: {"Retry-After": str(RETRY_AFTER_SECONDS)},
}


def _known(status: int) -> Callable[[Exception], tuple[Response, int]]:
    def handle(error: Exception) -> tuple[Response, int]:
        response, code = error_response(str(error), status)
        if code == 503:
            logger.warning("503: %s (%s)", error, getattr(error, "detail", ""))
        response.headers.update(HEADERS.get(code, {}))
        return response, code

    return handle


def _http_error(error: HTTPException) -> tuple[Response, int]:
    """Werkzeug's own errors as JSON, with the headers they carry (a 405's `Allow`)."""
    response, status = error_response(error.description or error.name, error.code or 500)
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


def _unexpected(error: Exception) -> tuple[Response, int]:
    logger.exception("unhandled error")
    return error_response("Internal server error", 500)
