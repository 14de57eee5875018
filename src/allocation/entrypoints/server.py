"""Serves the Flask app with gunicorn, configured from our settings rather than a config file."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from allocation.config import Settings
from allocation.entrypoints import logging_config


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """Each worker builds its own app (and database pool) after the fork."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        from allocation.entrypoints.flask_app import create_app

        return create_app(self._settings)


def serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    metrics_dir = _metrics_directory()
    if "prometheus_client" in sys.modules and metrics_dir is not None:
        raise RuntimeError(
            "prometheus_client was imported before its multiprocess directory was set"
        )
    # Imported here, once the directory is set and before any worker exists: the
    # hook below runs in a signal handler, where an import can meet a half-done one.
    from prometheus_client import multiprocess

    def worker_exited(_server: Any, worker: Any) -> None:
        """In the master (which defines no metrics): the worker's live gauges are gone."""
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": logging_config.gunicorn_logconfig(
            settings.log_level, settings.log_format
        ),
        "graceful_timeout": 10,
        "child_exit": worker_exited,
    }
    try:
        GunicornServer(settings, options).run()
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_directory() -> str | None:
    """Workers share Prometheus samples through files; a fresh directory per server."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    directory = tempfile.mkdtemp(prefix="allocation-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory
