"""Serves the Flask app with gunicorn, configured from our settings rather than a config file."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from allocation.config import Settings
from allocation.entrypoints.flask_app import create_app


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
        return create_app(self._settings)


def serve(settings: Settings, host: str, port: int, workers: int, threads: int) -> None:
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": "-",
        "loglevel": settings.log_level.lower(),
        "graceful_timeout": 10,
    }
    GunicornServer(settings, options).run()
