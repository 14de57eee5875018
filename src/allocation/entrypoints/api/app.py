"""The HTTP API: parse the request, call the bus or the view, map the result to HTTP."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from flask import Flask, Request, Response, jsonify, redirect, request
from flask.sessions import NullSession, SessionInterface, SessionMixin
from werkzeug.wrappers import Response as WerkzeugResponse

from allocation import bootstrap
from allocation.adapters import metrics
from allocation.config import Settings
from allocation.entrypoints.api import bodies, errors, observability, routes
from allocation.entrypoints.api.description import docs
from allocation.service_layer import relay
from allocation.service_layer.messagebus import UnitOfWorkFactory

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    service: bootstrap.Api | None = None,
) -> Flask:
    """Builds the app; pass the service's parts to wire fakes, or settings for real ones."""
    settings = settings or Settings()
    if service is None:
        service = bootstrap.api(settings)
    app = _Flask("allocation")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.register(app)
    observability.install(app)
    _check_requests(app, settings.api_token)
    _add_routes(app, service, settings.max_request_bytes)
    docs.register_docs(app)
    app.wsgi_app = _whole_body(app.wsgi_app)  # type: ignore[method-assign,assignment]
    return app


def _whole_body(wsgi_app: WSGIApplication) -> WSGIApplication:
    """Hands the server each response as one piece. A Flask response is an iterator,
    which granian drains chunk by chunk across the GIL; the API's answers are small,
    and a list is sent in one call (measured: bench/README.md)."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        chunks = wsgi_app(environ, start_response)
        try:
            return [b"".join(chunks)]
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    return app


class _NoSessions(SessionInterface):
    """The API keeps no sessions: every request shares one immutable null session
    instead of making its own."""

    _null = NullSession()

    def open_session(self, app: Flask, request: Request) -> NullSession:
        return self._null

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        pass


class _Flask(Flask):
    """Flask without two costs the API does not need on every request."""

    session_interface = _NoSessions()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        # Every view and hook here is synchronous: no coroutine check per call.
        return func


def _add_routes(app: Flask, service: bootstrap.Api, limit: int) -> None:
    routes.add(app, service, limit)

    @app.get("/")
    def home() -> WerkzeugResponse:
        return redirect("/docs", 302)

    @app.get("/health")
    def health() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    @app.get("/ready")
    def ready() -> tuple[Response, int]:
        readiness = service.readiness()
        healthy = all(state in ("ok", "not configured") for state in readiness.checks.values())
        status = "ready" if healthy else "unavailable"
        body = {"status": status, "checks": readiness.checks, **readiness.servers}
        return jsonify(body), 200 if healthy else 503

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        _update_outbox_gauges(service.uow_factory)
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)


def _check_requests(app: Flask, api_token: str | None) -> None:
    """What every request passes before its route, in one hook (each hook Flask runs
    costs a few microseconds): no trailing slash, then for a write a JSON body
    (415) and, with ``api_token``, the bearer token (401)."""
    expected = f"Bearer {api_token}".encode() if api_token else None

    @app.before_request
    def check() -> WerkzeugResponse | None:
        if request.path.endswith("/") and len(request.path) > 1:
            return _without_trailing_slash()
        if request.method in bodies.WRITES:
            bodies.require_json()
            if expected is not None:
                _require_token(expected)
        return None


def _without_trailing_slash() -> WerkzeugResponse:
    """A path ending in `/` is the same path without it (308: the method and body are
    kept): `/docs/` is the docs, and `/allocations/o1/` never asks for order `o1/`.
    A server cannot tell `%2F` from `/`, so no id in a path can end with one."""
    target = quote(request.path.rstrip("/") or "/", safe="/:@!$'()*+,;~")
    query = request.query_string.decode("latin-1")  # still percent-encoded
    return redirect(target + (f"?{query}" if query else ""), 308)


def _require_token(expected: bytes) -> None:
    given = request.headers.get("Authorization", "").encode()
    if not hmac.compare_digest(given, expected):
        raise errors.Unauthorized()


def _update_outbox_gauges(uow_factory: UnitOfWorkFactory) -> None:
    try:
        backlog = relay.backlog(uow_factory())
    except Exception as error:  # metrics must answer even when the database does not
        logger.warning("outbox backlog unavailable for /metrics: %s", error)
        return
    metrics.OUTBOX_UNSENT.set(backlog.unsent)
    age = 0.0 if backlog.oldest is None else time.time() - backlog.oldest.timestamp()
    metrics.OUTBOX_OLDEST_AGE.set(max(age, 0.0))
