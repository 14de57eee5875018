"""Figures derived from the rows: ratios to the SQL baselines and to the ceiling, API CPU
microseconds per request, what each per-request piece costs over the ceiling, and
which rows had connections waiting in the server's accept queue."""

from __future__ import annotations

from typing import Any

from bench.harness.ceiling import PIECES

BASELINE_OF = {"allocate": "baseline-allocate", "hot": "baseline-hot", "read": "baseline-read"}


def api_cpu_us(row: dict[str, Any]) -> float | None:
    """CPU microseconds of the server under test (its whole process tree) per request."""
    cpu: dict[str, float] = row.get("cpu_s") or {}
    requests: int | None = row.get("requests")
    if "api" not in cpu or not requests:
        return None
    return round(cpu["api"] * 1e6 / requests, 1)


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a and b else None


def _waiting_note(scenarios: dict[str, Any]) -> str | None:
    waited = {
        name: row["accept_queue"]
        for name, row in scenarios.items()
        if (row.get("accept_queue") or {}).get("mean", 0) >= 0.5
    }
    if not waited:
        return None
    connections = next(iter(scenarios[name]["connections"] for name in waited))
    rows = ", ".join(f"{name} {queue['mean']:.1f}" for name, queue in waited.items())
    return (
        f"connections waited in the server's accept queue (mean, of {connections}): {rows}. "
        "With keep-alive, a connection left there is not served while the others keep "
        "theirs: those rows' req/s and latencies are what the served connections saw"
    )


def derive(results: dict[str, Any]) -> None:
    """Adds the derived figures to the rows, a summary of the pieces' costs, and a
    note on connections that waited to be accepted."""
    scenarios = results["scenarios"]
    note = _waiting_note(scenarios)
    if note:
        results["notes"].append(note)
    for name, row in scenarios.items():
        baseline = scenarios.get(BASELINE_OF.get(name, ""))
        if baseline and baseline.get("rps") and row.get("rps"):
            row["ratio_to_baseline"] = ratio(row["rps"], baseline["rps"])
        if row.get("tool") == "wrk":
            row["api_cpu_us_per_request"] = api_cpu_us(row)
    ceiling = scenarios.get("ceiling")
    read = scenarios.get("read")
    if read:
        lat = read["latency_ms"]
        read["p99_over_p50"] = ratio(lat.get("p99"), lat.get("p50"))
        if ceiling:
            read["ratio_to_ceiling"] = ratio(read.get("rps"), ceiling.get("rps"))
    if not ceiling or ceiling.get("api_cpu_us_per_request") is None:
        return
    costs = {}
    for piece in PIECES:
        row = scenarios.get(piece)
        if row and row.get("api_cpu_us_per_request") is not None:
            row["cost_over_ceiling_us"] = round(
                row["api_cpu_us_per_request"] - ceiling["api_cpu_us_per_request"], 1
            )
            costs[piece] = row["cost_over_ceiling_us"]
    results["ceiling_costs_us_per_request"] = costs
