"""What the API records about every request: its id, a log line, and metrics.

Three pieces, which `make bench` switches on one at a time over a bare app to
show what each costs. They share one hook before and one after the request:
each hook Flask runs costs a few microseconds of its own.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, g, request

from allocation.adapters import metrics
from allocation.service_layer import log_context

logger = logging.getLogger("allocation.entrypoints.api")

REQUEST_ID_HEADER = "X-Request-ID"


@dataclass(frozen=True)
class Pieces:
    request_ids: bool = True  # the caller's X-Request-ID (if usable) or a new one, bound to logs
    access_log: bool = True  # one INFO line per request: method, path, status, duration
    metrics: bool = True  # requests by endpoint, method and status; latency


def install(app: Flask, pieces: Pieces = Pieces()) -> None:
    """Installs the chosen pieces (by default all of them, as the service runs)."""
    if not (pieces.request_ids or pieces.access_log or pieces.metrics):
        return

    @app.before_request
    def start() -> None:
        g.started = time.perf_counter()
        if pieces.request_ids:
            incoming = request.headers.get(REQUEST_ID_HEADER, "")
            g.request_id = incoming if _usable_request_id(incoming) else uuid.uuid4().hex
            g.unbind_log_context = log_context.bind(request_id=g.request_id)

    @app.after_request
    def finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        if pieces.metrics:
            rule = request.url_rule
            endpoint = rule.rule if rule is not None else "unmatched"
            metrics.observe_request(endpoint, request.method, response.status_code, elapsed)
        if pieces.request_ids:
            response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        if pieces.access_log:
            logger.info(
                "%s %s %d %.1fms",
                request.method,
                _shortened(request.path),
                response.status_code,
                elapsed * 1000,
            )
        return response

    if pieces.request_ids:

        @app.teardown_request
        def unbind(_error: BaseException | None) -> None:
            unbind_log_context: Callable[[], None] | None = g.pop("unbind_log_context", None)
            if unbind_log_context is not None:
                unbind_log_context()


# A path in the access log is cut here: a client may send kilobytes of one.
MAX_LOGGED_PATH = 512


def _shortened(path: str) -> str:
    if len(path) <= MAX_LOGGED_PATH:
        return path
    return f"{path[:MAX_LOGGED_PATH]}… ({len(path)} characters)"


def _usable_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


def request_source() -> dict[str, str]:
    """What caused a change made by the current request, for its stock movements."""
    request_id = g.get("request_id")
    return {} if request_id is None else {"request_id": request_id}
