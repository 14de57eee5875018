#!/usr/bin/env python3
"""Serves one of bench/apps.py's apps exactly as `allocation api` serves the service.

    python bench/serve_app.py APP [--host H] [--port P] [--workers W] [--threads T]

Same settings (from the environment), same logging set-up, same server: serve().
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from allocation.entrypoints.cli import server  # noqa: E402
from bench.apps import FACTORIES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", choices=sorted(FACTORIES))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5005)
    parser.add_argument("--workers", type=int, default=server.default_workers())
    parser.add_argument("--threads", type=int, default=server.DEFAULT_THREADS)
    args = parser.parse_args(argv)

    from allocation.config import Settings
    from allocation.entrypoints.cli import logging_config
    from allocation.entrypoints.cli.server import serve

    settings = Settings.from_env(os.environ)
    logging_config.configure(settings.log_level, settings.log_format, batched=True)
    factory = None if args.app == "service" else FACTORIES[args.app]
    serve(settings, args.host, args.port, args.workers, args.threads, app_factory=factory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
