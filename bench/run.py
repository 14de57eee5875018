#!/usr/bin/env python3
"""Benchmark of the allocation service as it ships, in one command.

    .venv/bin/python bench/run.py [--duration 20] [--quick] [--long-run 100000] [--profile]

Starts throwaway PostgreSQL and Redis (devtools/servers.py), migrates, serves the
API with granian (`allocation api`), runs `allocation relay` and `allocation
consumer`, seeds data through the HTTP API, drives load with wrk (Lua scripts in
bench/wrk/) and pgbench (scripts in bench/pgbench/) from separate processes,
measures the web stack's ceiling and other WSGI servers beside it, then prints
the tables and targets and writes JSON to bench/results/. The work is done by
the modules of bench/harness/; see bench/README.md.

Only processes started here are ever signalled, by their PID.
"""

from __future__ import annotations

import atexit
import json
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import stack  # noqa: E402
from bench.harness.config import RESULTS, parse_args  # noqa: E402
from bench.harness.context import Run  # noqa: E402
from bench.harness.report import render  # noqa: E402
from bench.harness.runner import execute  # noqa: E402


def write_results(run: Run, results: dict[str, Any]) -> Path:
    """bench/results/<timestamp>.json and bench/results/latest.json."""
    text = json.dumps(results, indent=2, default=str)
    path = RESULTS / f"{run.stamp}.json"
    path.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    run = Run(parse_args(argv))
    atexit.register(stack.stop, run)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = execute(run)
    finally:
        stack.stop(run)
        atexit.unregister(stack.stop)
        signal.signal(signal.SIGTERM, previous)
    table = render(results)
    results["table"] = table
    path = write_results(run, results)
    print(table)
    print(
        f"\nJSON: {path.relative_to(ROOT)} (and bench/results/latest.json); "
        f"logs: {run.logs.relative_to(ROOT)}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
