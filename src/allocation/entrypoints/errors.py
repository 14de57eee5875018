"""The one table that maps errors to HTTP status codes, and the JSON error responses."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from allocation.domain import exceptions
from allocation.entrypoints.schemas import InvalidInput

logger = logging.getLogger(__name__)

STATUS_CODES: dict[type[Exception], int] = {
    InvalidInput: 400,
    exceptions.InvalidSku: 400,
    exceptions.UnknownBatch: 404,
    exceptions.OutOfStockError: 409,
    exceptions.DuplicateBatch: 409,
    exceptions.LineConflict: 409,
    exceptions.ConcurrencyConflict: 409,
}


def error_response(message: str, status: int) -> tuple[Response, int]:
    return jsonify(message=message), status


def register(app: Flask) -> None:
    for error_class, status in STATUS_CODES.items():
        app.register_error_handler(error_class, _known(status))
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def _known(status: int):  # type: ignore[no-untyped-def]
    def handle(error: Exception) -> tuple[Response, int]:
        return error_response(str(error), status)

    return handle


def _http_error(error: HTTPException) -> tuple[Response, int]:
    return error_response(error.description or error.name, error.code or 500)


def _unexpected(error: Exception) -> tuple[Response, int]:
    logger.exception("unhandled error")
    return error_response("Internal server error", 500)
