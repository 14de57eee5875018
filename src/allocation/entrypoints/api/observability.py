"""What the API records about every request: its id, a log line, and metrics.

Three pieces, which `make bench` switches on one at a time over a bare app to
show what each costs. They run in one WSGI layer around the Flask app rather
than in Flask's hooks: the layer reads and writes the WSGI environ and headers
directly, where every hook and every access to Flask's request proxies cost
microseconds of their own (bench/README.md has the figures). The only thing it
needs from inside Flask is the matched route, for the metrics' endpoint label:
the request class leaves it in the environ.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, request
from werkzeug.routing import Rule

from allocation.adapters import metrics
from allocation.service_layer import log_context

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("allocation.entrypoints.api")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = "allocation.request_id"  # environ keys this layer shares with the app
_ROUTE = "allocation.route"
# A path in the access log is cut here: a client may send kilobytes of one.
MAX_LOGGED_PATH = 512


@dataclass(frozen=True)
class Pieces:
    request_ids: bool = True  # the caller's X-Request-ID (if usable) or a new one, bound to logs
    access_log: bool = True  # one INFO line per request: method, path, status, duration
    metrics: bool = True  # requests by endpoint, method and status; latency


class RouteRecordingRequest(Request):
    """Flask's request, which also leaves the rule it matched in the environ."""

    @property
    def url_rule(self) -> Rule | None:
        return self.__dict__.get("_url_rule")

    @url_rule.setter
    def url_rule(self, rule: Rule | None) -> None:
        self.__dict__["_url_rule"] = rule
        if rule is not None:
            self.environ[_ROUTE] = rule.rule


def install(app: Flask, pieces: Pieces = Pieces()) -> None:
    """Installs the chosen pieces (by default all of them, as the service runs)."""
    if pieces.request_ids or pieces.access_log or pieces.metrics:
        app.request_class = RouteRecordingRequest
        app.wsgi_app = Observed(app.wsgi_app, pieces)  # type: ignore[method-assign]


class Observed:
    """The WSGI layer: binds the request id for the request's log lines and sends it
    back, then writes the access line and the metrics once the answer is made (the
    app hands over whole bodies, so that is when the app returns)."""

    def __init__(self, app: WSGIApplication, pieces: Pieces) -> None:
        self._app = app
        self._pieces = pieces

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = None
        if self._pieces.request_ids:
            request_id = _request_id(environ.get("HTTP_X_REQUEST_ID", ""))
            environ[_REQUEST_ID] = request_id
        answered = _Answer(start_response, request_id)
        unbind = log_context.bind(request_id=request_id) if request_id else None
        try:
            return self._app(environ, answered.start)
        finally:
            self._record(environ, answered.status, time.perf_counter() - started)
            if unbind is not None:
                unbind()

    def _record(self, environ: WSGIEnvironment, status: int, elapsed: float) -> None:
        method = environ.get("REQUEST_METHOD", "")
        if self._pieces.metrics:
            route = environ.get(_ROUTE, "unmatched")
            metrics.observe_request(route, method, status, elapsed)
        if self._pieces.access_log and logger.isEnabledFor(logging.INFO):
            path = _shortened(environ.get("PATH_INFO", ""))
            # Formatted here, not by logging: a path may hold a `%`, and a message with
            # no arguments is written as it is.
            logger.info(f"{method} {path} {status} {elapsed * 1000:.1f}ms")


class _Answer:
    """Remembers the status the app answers with, and adds the request id header."""

    __slots__ = ("_request_id", "_start_response", "status")

    def __init__(self, start_response: StartResponse, request_id: str | None) -> None:
        self._start_response = start_response
        self._request_id = request_id
        self.status = 500  # unless the app answers: it failed before it could

    def start(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = int(status[:3])
        if self._request_id is not None:
            headers.append((REQUEST_ID_HEADER, self._request_id))
        return self._start_response(status, headers, exc_info)


def _request_id(given: str) -> str:
    """The caller's id, if usable, or a new one (32 hex digits, as a UUID's)."""
    if 0 < len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return secrets.token_hex(16)


def _shortened(path: str) -> str:
    if len(path) <= MAX_LOGGED_PATH:
        return path
    return f"{path[:MAX_LOGGED_PATH]}… ({len(path)} characters)"


def request_source() -> dict[str, str]:
    """What caused a change made by the current request, for its stock movements."""
    request_id = request.environ.get(_REQUEST_ID)
    return {} if request_id is None else {"request_id": request_id}
