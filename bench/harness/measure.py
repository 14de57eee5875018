"""Measuring one load run: CPU per component, SQL statistics, retried conflicts and memory."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from bench.harness.context import Run
from bench.harness.processes import Service
from bench.harness.procstat import AcceptQueueSampler, cpu_delta, cpu_snapshot

# What the bus logs (INFO) each time it runs a command again after losing a race.
CONFLICT_LOG = re.compile(rb"concurrency conflict in")
PER_REQUEST = ("api", "postgres", "relay", "consumer", "redis", "loadgen", "other")

Load = Callable[[], dict[str, Any]]


def _roots(run: Run, server: Service) -> dict[str, int | None]:
    """The process trees to account for. `api` is the server under test; when that
    is not the service's API (a comparison), the idle API is `service_api`."""

    def pid(service: Service | None) -> int | None:
        return service.pid if service is not None and service.proc is not None else None

    roots = {
        "api": pid(server),
        "postgres": run.pg.pid if run.pg and run.pg.pid else None,
        "relay": pid(run.services.get("relay")),
        "consumer": pid(run.services.get("consumer")),
        "redis": run.redis.pid if run.redis and run.redis.pid else None,
    }
    if server is not run.services.get("api"):
        roots["service_api"] = pid(run.services.get("api"))
    return roots


def _log_waiting(run: Run, name: str, result: dict[str, Any]) -> None:
    """Warns when connections waited, unserved, in the server's accept queue."""
    queue = result["accept_queue"]
    if queue["mean"] >= 0.5:
        run.log(
            f"WARNING {name}: on average {queue['mean']:.1f} of {result['connections']} "
            f"connections (up to {queue['max']}) waited in the server's accept queue"
        )


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def measure(
    run: Run,
    name: str,
    description: str,
    load: Load,
    server: Service | None = None,
    extra: dict[str, Any] | None = None,
    warn_waiting: bool = True,
) -> dict[str, Any]:
    """Runs a load generator with CPU, SQL statistics, conflict log lines, worker
    memory and the server's accept queue recorded around it; returns the record
    (not stored)."""
    assert run.db is not None
    server = server or run.api
    if run.db.wait_outbox_drained() is None:
        run.note(f"before {name}: the outbox did not drain in 60 s")
    run.db.pgss_reset()
    log_offset = server.log_size()
    roots = _roots(run, server)
    before = cpu_snapshot(roots)
    run.log(f"{name}: {description}")
    with AcceptQueueSampler(server.port or 0) as waiting:
        result = load()
    after = cpu_snapshot(roots)
    result["name"] = name
    result["description"] = description
    result["cpu_s"] = cpu_delta(before, after, list(roots))
    requests = max(1, result.get("requests") or 1)
    result["cpu_ms_per_request"] = {
        k: round(result["cpu_s"][k] * 1000 / requests, 3) for k in PER_REQUEST
    }
    result["db"] = run.db.pgss_top()
    result["db"]["exec_ms_per_request"] = round(result["db"]["exec_ms_total"] / requests, 3)
    result["conflicts_retried"] = server.count_in_log(CONFLICT_LOG, log_offset)
    result["outbox_unsent_after"] = run.db.outbox_unsent()
    result["worker_rss_kib_after"] = run.worker_rss(server)
    if result.get("tool") == "wrk":
        result["accept_queue"] = waiting.summary()
        if warn_waiting:
            _log_waiting(run, name, result)
    if extra:
        result.update(extra)
    capacity = result["cpu_s"]["machine_capacity"] or 1
    if result["cpu_s"]["other"] / capacity > 0.10:
        note = (
            f"{name}: {result['cpu_s']['other']:.1f} CPU-s of the machine went to "
            "processes outside the benchmark (another workload?); numbers are pessimistic"
        )
        run.note(note)
        run.log("WARNING " + note)
    return result


def measured(
    run: Run,
    name: str,
    description: str,
    load: Load,
    server: Service | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`measure`, stored as a row of the results' scenarios and logged."""
    result = measure(run, name, description, load, server, extra)
    run.results["scenarios"][name] = result
    lat = result["latency_ms"]
    run.log(
        f"{name}: {result['rps']} req/s, p50 {ms(lat['p50'])} ms, p99 {ms(lat['p99'])} ms,"
        f" non-2xx {result.get('non_2xx')}, conflicts retried {result['conflicts_retried']}"
    )
    return result
