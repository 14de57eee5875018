"""The Flask apps the benchmark serves beside the API: a bare ceiling, the per-request
pieces over it one at a time, the read path's query alone, and WSGI entries that
build the ceiling or the real service in each worker of another WSGI server.

The factories are module-level (or partials of module-level functions): serve()
hands them to workers it starts as fresh interpreters. gunicorn and uWSGI fork
theirs, so the WSGI entries build their app in each worker, lazily.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, jsonify

from allocation.config import Settings
from allocation.entrypoints.cli.server import AppFactory

ROUTE = "/allocations/<path:orderid>"
CONSTANT = [{"sku": "SKU", "batchref": "BATCH"}]


def _constant_route(app: Flask) -> None:
    @app.get(ROUTE)
    def allocations(orderid: str) -> Response:
        return jsonify(CONSTANT)


def _validating_route(app: Flask) -> None:
    from allocation.entrypoints.api.schemas import parse_orderid

    @app.get(ROUTE)
    def allocations(orderid: str) -> Response:
        parse_orderid(orderid)
        return jsonify(CONSTANT)


def ceiling(_settings: Settings) -> Flask:
    """A plain Flask app with one route answering a constant: the web stack's ceiling."""
    app = Flask("ceiling")
    _constant_route(app)
    return app


def _pieces_app(
    _settings: Settings,
    request_ids: bool = False,
    access_log: bool = False,
    metrics: bool = False,
    validation: bool = False,
) -> Flask:
    from allocation.entrypoints.api import observability

    app = Flask("ceiling")
    observability.install(app, observability.Pieces(request_ids, access_log, metrics))
    (_validating_route if validation else _constant_route)(app)
    return app


def _with_pieces(
    request_ids: bool = False,
    access_log: bool = False,
    metrics: bool = False,
    validation: bool = False,
) -> AppFactory:
    """The ceiling plus the chosen observability pieces and/or the path's validation
    (a partial of a module-level function: serve() hands it to spawned workers)."""
    return functools.partial(
        _pieces_app,
        request_ids=request_ids,
        access_log=access_log,
        metrics=metrics,
        validation=validation,
    )


def ceiling_db(settings: Settings) -> Flask:
    """Plain Flask routes answering from the read path's and the availability path's
    queries, and nothing else."""
    from allocation.adapters.read_models.queries import SqlReadModel
    from allocation.adapters.sql import database

    model = SqlReadModel(database.make_engine(settings.database_url, autocommit=True))
    app = Flask("ceiling-db")

    @app.get(ROUTE)
    def allocations(orderid: str) -> tuple[Response, int]:
        rows = model.allocations_for_order(orderid)
        return jsonify(rows), 200 if rows else 404

    @app.get("/availability/<path:sku>")
    def availability(sku: str) -> tuple[Response, int]:
        found = model.availability([sku])
        if not found:
            return jsonify(message="unknown"), 404
        shown = {"sku": sku, "version": found[0].version, "available": found[0].available}
        return jsonify(shown), 200

    return app


def service(settings: Settings) -> Flask:
    """The real service's app, as `allocation api` builds it."""
    from allocation.entrypoints.api.app import create_app

    return create_app(settings)


FACTORIES: dict[str, AppFactory] = {
    "ceiling": ceiling,
    "ceiling+request-id": _with_pieces(request_ids=True),
    "ceiling+log": _with_pieces(access_log=True),
    "ceiling+metrics": _with_pieces(metrics=True),
    "ceiling+validation": _with_pieces(validation=True),
    "ceiling+all": _with_pieces(True, True, True, validation=True),
    "ceiling+db": ceiling_db,
    "service": service,
}


# -- WSGI entries for gunicorn and uWSGI (bench.apps:ceiling_wsgi, bench.apps:service_wsgi)

StartResponse = Callable[..., Any]


class LazyApp:
    """A WSGI callable that builds its app on the first request, in the worker
    that receives it (never in a server's master process)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._app: Flask | None = None
        self._lock = threading.Lock()

    def _build(self) -> Flask:
        from allocation.entrypoints.cli import logging_config

        settings = Settings.from_env(os.environ)
        # As `allocation api` does before serving: the access log is INFO lines.
        logging_config.configure(settings.log_level, settings.log_format, batched=True)
        return FACTORIES[self.name](settings)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        app = self._app
        if app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._build()
                app = self._app
        return app(environ, start_response)


ceiling_wsgi = LazyApp("ceiling")
service_wsgi = LazyApp("service")
