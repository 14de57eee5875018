"""Measuring one load run: CPU per component, SQL statistics, retried conflicts and memory."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
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
    result["cpu_ms_per_request"] = _per_request(result["cpu_s"], requests)
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


def merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from the slices of an interleaved measurement: counts and CPU summed,
    req/s over the summed time, latency percentiles the slices' own weighted by their
    requests (close to the merged distribution's when the slices are alike, as
    slices of one load are), the last slice's state after the run."""
    first, last = parts[0], parts[-1]
    requests = sum(p["requests"] for p in parts)
    seconds = sum(p["seconds"] for p in parts)
    row = dict(last)
    row["slices"] = len(parts)
    row["requests"], row["seconds"] = requests, round(seconds, 2)
    row["rps"] = round(requests / seconds, 1) if seconds > 0 else None
    row["latency_ms"] = {
        key: max(values) if key == "max" else _weighted(values, parts)
        for key in first["latency_ms"]
        for values in [[p["latency_ms"][key] for p in parts]]
    }
    for key in ("non_2xx", "out_of_stock", "errors", "fillers", "conflicts_retried"):
        row[key] = sum(p.get(key) or 0 for p in parts)
    row["statuses"] = _summed([p["statuses"] for p in parts])
    row["error_messages"] = _summed([p["error_messages"] for p in parts])
    row["socket_errors"] = _summed([p["socket_errors"] for p in parts])
    row["cpu_s"] = _summed([p["cpu_s"] for p in parts])
    row["cpu_ms_per_request"] = _per_request(row["cpu_s"], requests)
    row["db"] = dict(
        last["db"], exec_ms_total=round(sum(p["db"]["exec_ms_total"] for p in parts), 1)
    )
    row["db"]["exec_ms_per_request"] = round(row["db"]["exec_ms_total"] / max(1, requests), 3)
    if "accept_queue" in last:
        queues = [p["accept_queue"] for p in parts]
        row["accept_queue"] = {
            "max": max(q["max"] for q in queues),
            "mean": _weighted([q["mean"] for q in queues], parts),
            "samples": sum(q["samples"] for q in queues),
        }
    return row


def _per_request(cpu_s: dict[str, float], requests: int) -> dict[str, float]:
    """Each component's CPU in milliseconds per request."""
    return {k: round(cpu_s[k] * 1000 / max(1, requests), 3) for k in PER_REQUEST}


def _weighted(values: list[float], parts: list[dict[str, Any]]) -> float:
    total: int = sum(p["requests"] for p in parts) or 1
    weighted: float = sum(v * p["requests"] for v, p in zip(values, parts, strict=True))
    return round(weighted / total, 3)


def _summed(maps: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for counts in maps:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return total


@dataclass(frozen=True)
class Row:
    """A row measured in slices: `load(seconds, slice_label)` runs one slice, against
    `server` (default: the API) and with `extra` fields in its record."""

    name: str
    description: str
    load: Callable[[int, str], dict[str, Any]]
    server: Service | None = None
    extra: dict[str, Any] | None = None


def interleaved(run: Run, rows: list[Row], seconds: int, slices: int) -> None:
    """Measures rows that are compared with each other in alternating slices (A B A B
    …), `seconds` in all for each: a machine shared with other tenants speeds up and
    slows down by more than such rows differ, and each row then sees the same spells."""
    parts: dict[str, list[dict[str, Any]]] = {row.name: [] for row in rows}
    share = max(1, seconds // slices)
    for n in range(1, slices + 1):
        for row in rows:
            label = f"{row.name}-{n}"
            description = f"{row.description} (slice {n} of {slices})"
            parts[row.name].append(
                measure(
                    run,
                    row.name,
                    description,
                    partial(row.load, share, label),
                    server=row.server,
                    extra=row.extra,
                )
            )
    for row in rows:
        result = merged(parts[row.name])
        if slices > 1:
            result["description"] = f"{row.description} ({slices} alternating slices of {share} s)"
        else:
            result["description"] = row.description
        store(run, row.name, result)


def store(run: Run, name: str, result: dict[str, Any]) -> dict[str, Any]:
    """Stores `result` as the results' row `name`, and logs it."""
    run.results["scenarios"][name] = result
    lat = result["latency_ms"]
    run.log(
        f"{name}: {result['rps']} req/s, p50 {ms(lat['p50'])} ms, p99 {ms(lat['p99'])} ms,"
        f" non-2xx {result.get('non_2xx')}, conflicts retried {result['conflicts_retried']}"
    )
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
    return store(run, name, measure(run, name, description, load, server, extra))
