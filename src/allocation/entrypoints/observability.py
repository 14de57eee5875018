"""What the API records about every request: its id, a log line, and metrics.

Three separate pieces, each installed on a Flask app by one function, so that
`make bench` can add them one at a time to a bare app and show what each costs.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from flask import Flask, Response, g, request

from allocation.adapters import metrics
from allocation.service_layer import log_context

logger = logging.getLogger("allocation.entrypoints.flask_app")

REQUEST_ID_HEADER = "X-Request-ID"


def install(app: Flask) -> None:
    """Every piece, as the service runs them."""
    request_ids(app)
    access_log(app)
    request_metrics(app)


def request_ids(app: Flask) -> None:
    """The caller's X-Request-ID (if usable) or a new one, on the response and on
    every log line written while the request is handled."""

    @app.before_request
    def bind_request_id() -> None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = incoming if _usable_request_id(incoming) else uuid.uuid4().hex
        g.unbind_log_context = log_context.bind(request_id=g.request_id)

    @app.after_request
    def send_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        return response

    @app.teardown_request
    def unbind_request_id(_error: BaseException | None) -> None:
        unbind: Callable[[], None] | None = g.pop("unbind_log_context", None)
        if unbind is not None:
            unbind()


def _usable_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


def access_log(app: Flask) -> None:
    """One INFO line per request: method, path, status and duration."""
    started = _start_clock(app)

    @app.after_request
    def log_request(response: Response) -> Response:
        elapsed_ms = (time.perf_counter() - started()) * 1000
        logger.info(
            "%s %s %d %.1fms", request.method, request.path, response.status_code, elapsed_ms
        )
        return response


def request_metrics(app: Flask) -> None:
    """Requests by endpoint, method and status; latency by endpoint and method."""
    started = _start_clock(app)

    @app.after_request
    def count_request(response: Response) -> Response:
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        metrics.observe_request(
            endpoint, request.method, response.status_code, time.perf_counter() - started()
        )
        return response


def _start_clock(app: Flask) -> Callable[[], float]:
    """Notes when each request started (once, however many pieces ask)."""
    if "allocation_clock" not in app.extensions:

        @app.before_request
        def start_clock() -> None:
            g.started = time.perf_counter()

        app.extensions["allocation_clock"] = True
    return lambda: float(g.get("started", time.perf_counter()))
