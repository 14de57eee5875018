"""Serves the Flask app with granian, configured from our settings rather than a config file.

granian (a Rust HTTP server with a WSGI interface) was chosen by measurement:
bench/README.md has the comparison with gunicorn and uWSGI. Its HTTP handling
runs outside the GIL: a client that is slow to send its request holds a
connection, never a Python thread.

Workers are started as fresh interpreters (multiprocessing's "spawn"), not
forked: each imports the application after the server has set up the shared
metrics directory, so nothing the parent process imported, in whatever order,
can leave a worker with single-process metrics.
"""

from __future__ import annotations

import functools
import gc
import logging
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable

from flask import Flask
from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server
from sqlalchemy.engine import make_url

from allocation import bootstrap
from allocation.config import Settings
from allocation.domain.exceptions import DatabaseUnavailable
from allocation.entrypoints.cli import logging_config

logger = logging.getLogger(__name__)

# Measured on 2 cores (bench/README.md): single-threaded workers, two per CPU,
# answer reads fastest; threads in a worker share its GIL, and four threads per
# worker once left a few connections waiting 0.6 s in a 20 s run.
DEFAULT_THREADS = 1


def default_workers() -> int:
    """Two worker processes per CPU this process may run on."""
    return 2 * len(os.sched_getaffinity(0))


# A client gets this long to send its request headers; a slower one is dropped.
HEADER_READ_TIMEOUT_MS = 10_000
PROCESS_NAME = "allocation api"
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
    """Serves the service's app (or, for the benchmark, the one ``app_factory`` makes:
    a module-level function, since each worker imports it)."""
    metrics_dir = _metrics_directory()
    multiprocessing.set_start_method("spawn", force=True)
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
        # `ps` shows "allocation api" and "allocation api worker-N".
        process_name=PROCESS_NAME,
    )
    if app_factory is None:
        announce(settings, host, port)
    try:
        loader = functools.partial(_worker_app, app_factory or _service_app, settings)
        server.serve(target_loader=loader)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def announce(settings: Settings, host: str, port: int) -> None:
    """One line at start: where the API listens, its docs, the database (no password)
    and Redis; and a warning when the database's schema is behind the code."""
    url = f"http://{host}:{port}"
    redis = settings.shown_redis_url or "not configured: events are logged, not published"
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    logger.info(
        "serving the API at %s (docs: %s/docs); database %s; Redis %s", url, url, database, redis
    )
    try:
        problem = bootstrap.schema_problem(settings)
    except DatabaseUnavailable as error:
        logger.warning("%s (%s); serving anyway: /ready says when it is back", error, error.detail)
        return
    if problem is not None:
        logger.warning("%s; serving anyway: /ready says 503 until then", problem.explained)


def _worker_app(factory: AppFactory, settings: Settings, _target: str) -> Flask:
    """Runs in each worker: the app, built with the worker's own pools, and then
    everything start-up built moved out of the garbage collector's sight, so that
    a full collection scans only what requests made since (collecting the 100,000
    objects of Flask, SQLAlchemy and the mappings took about 30 ms, a pause for
    every request waiting on that worker)."""
    logging_config.configure(settings.log_level, settings.log_format, batched=True)
    app = factory(settings)
    gc.collect()
    gc.freeze()
    return app


def _service_app(settings: Settings) -> Flask:
    from allocation.entrypoints.api.app import create_app

    return create_app(settings)


def _metrics_directory() -> str | None:
    """Workers share Prometheus samples through files; a fresh directory per server."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    directory = tempfile.mkdtemp(prefix="allocation-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory
