"""Serves the Flask app with granian, configured from our settings rather than a config file.

granian (a Rust HTTP server with a WSGI interface) was chosen by measurement:
bench/README.md has the comparison with gunicorn and uWSGI. Its HTTP handling
runs outside the GIL: a client that is slow to send its request holds a
connection, never a Python thread.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Callable

from flask import Flask
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server

from allocation.config import Settings
from allocation.entrypoints import logging_config

# Measured on 2 cores (bench/README.md): single-threaded workers, two per CPU,
# answer reads fastest; threads in a worker share its GIL, and four threads per
# worker once left a few connections waiting 0.6 s in a 20 s run.
DEFAULT_THREADS = 1


def default_workers() -> int:
    """Two worker processes per CPU this process may run on."""
    return 2 * len(os.sched_getaffinity(0))


# A client gets this long to send its request headers; a slower one is dropped.
HEADER_READ_TIMEOUT_MS = 10_000
# Open connections the whole server keeps (granian's default backlog).
MAX_CONNECTIONS = 1024
# On SIGTERM, requests in flight get this long to finish before a worker is killed.
GRACEFUL_TIMEOUT_SECONDS = 10


AppFactory = Callable[[Settings], Flask]


def serve(
    settings: Settings,
    host: str,
    port: int,
    workers: int,
    threads: int,
    app_factory: AppFactory | None = None,
) -> None:
    """Serves the service's app (or, for the benchmark, the one ``app_factory`` makes)."""
    metrics_dir = _metrics_directory()
    if "prometheus_client" in sys.modules and metrics_dir is not None:
        raise RuntimeError(
            "prometheus_client was imported before its multiprocess directory was set"
        )
    server = Server(
        "allocation",
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        # At most `threads` requests per worker run in Python at once; the rest
        # wait in granian, outside the GIL.
        blocking_threads=threads,
        # granian's backpressure caps the connections a worker holds open, idle
        # ones included: it must be far above `threads`, or a few slow or idle
        # keep-alive clients would take every worker.
        backpressure=MAX_CONNECTIONS // workers,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        respawn_failed_workers=True,
        respawn_interval=0.5,
        workers_kill_timeout=GRACEFUL_TIMEOUT_SECONDS,
        log_level=LogLevels(settings.log_level.lower()),
        log_dictconfig=logging_config.server_logconfig(settings.log_level, settings.log_format),
    )
    try:
        # Called in each worker after the fork: every worker has its own app and pools.
        factory = app_factory or _service_app
        server.serve(target_loader=lambda _target: _frozen(factory(settings)))
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _frozen(app: Flask) -> Flask:
    """Moves everything the worker built at start-up out of the garbage collector's
    sight: a full collection then scans only what requests made since, instead of
    the 100,000 objects of Flask, SQLAlchemy and the mappings (about 30 ms each
    time, a visible pause for the requests waiting on that worker)."""
    gc.collect()
    gc.freeze()
    return app


def _service_app(settings: Settings) -> Flask:
    from allocation.entrypoints.flask_app import create_app

    return create_app(settings)


def _metrics_directory() -> str | None:
    """Workers share Prometheus samples through files; a fresh directory per server."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    directory = tempfile.mkdtemp(prefix="allocation-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory
