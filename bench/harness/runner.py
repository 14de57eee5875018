"""The order of a run: start the stack, seed, run the chosen scenarios, profile, check."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.harness import scenarios, stack
from bench.harness.ceiling import ceiling
from bench.harness.checks import final_checks
from bench.harness.config import ROOT
from bench.harness.context import Run
from bench.harness.figures import derive
from bench.harness.procstat import git, machine_info, tool_version
from bench.harness.profiling import profile
from bench.harness.seeding import seed
from bench.harness.servers import compare_servers
from bench.harness.targets import evaluate

SCENARIOS: dict[str, Callable[[Run], None]] = {
    "allocate": scenarios.allocate,
    "hold": scenarios.hold,
    "hot": scenarios.hot,
    "read": scenarios.read,
    "availability": scenarios.availability,
    "ceiling": ceiling,
    "growth": scenarios.growth,
    "long": scenarios.long,
    "servers": compare_servers,
}


def _versions(run: Run) -> dict[str, Any]:
    where = run.config.src or ROOT
    uncommitted = [
        line
        for line in git(where, "status", "--porcelain").splitlines()
        if not line[3:].startswith("bench/")
    ]
    return {
        "wrk": tool_version([run.wrk_binary or "wrk", "--version"]),
        "pgbench": tool_version([run.pgbench_binary or "pgbench", "--version"]),
        "redis": tool_version(["redis-server", "--version"]),
        "service_commit": git(where, "rev-parse", "--short", "HEAD"),
        "service_uncommitted_files": len(uncommitted),
        "service_src": run.config.src or str(ROOT / "src"),
    }


def execute(run: Run) -> dict[str, Any]:
    """Runs everything but stopping (the caller stops the stack, whatever happens)."""
    c, results = run.config, run.results
    wall_started = time.monotonic()
    results["started_at"] = run.started_at.isoformat()
    results["machine"] = machine_info()
    results["versions"] = _versions(run)
    results["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in c.__dict__.items()}
    stack.start(run)
    results["versions"]["postgres"] = run.sql("SHOW server_version")[0][0]
    results["memory"]["idle_kib"] = run.worker_rss()
    results["setup_seconds"] = round(time.monotonic() - wall_started, 1)
    seed(run)
    results["memory"]["after_seed_kib"] = run.worker_rss()
    for name in c.scenarios:
        SCENARIOS[name](run)
    if c.profile:
        profile(run)
    results["memory"]["end_kib"] = run.worker_rss()
    final_checks(run)
    derive(results)
    results["targets"] = evaluate(results)
    results["wall_seconds"] = round(time.monotonic() - wall_started, 1)
    return results
