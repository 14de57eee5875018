"""The targets: pass/fail lines over the rows that ran, with the figures behind each."""

from __future__ import annotations

from typing import Any

from bench.harness.checks import failed_checks


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def _at_least(
    label: str, scenarios: dict[str, Any], name: str, other: str, factor: float
) -> dict[str, Any] | None:
    """`name` req/s >= factor x `other` req/s, if both rows ran."""
    if name not in scenarios or other not in scenarios:
        return None
    a, b = scenarios[name].get("rps"), scenarios[other].get("rps")
    passed = bool(a and b and a >= factor * b)
    share = f"{a / b:.3f}x" if a and b else "-"
    return {
        "target": label,
        "passed": passed,
        "detail": f"{name} {_num(a)} req/s = {share} {other} {_num(b)} req/s",
    }


def _read_tail(scenarios: dict[str, Any]) -> dict[str, Any] | None:
    if "read" not in scenarios:
        return None
    lat = scenarios["read"]["latency_ms"]
    p50, p99 = lat.get("p50"), lat.get("p99")
    return {
        "target": "read p99 <= 4x read p50",
        "passed": bool(p50 and p99 is not None and p99 <= 4 * p50),
        "detail": f"p99 {_num(p99)} ms, p50 {_num(p50)} ms"
        + (f" ({p99 / p50:.1f}x)" if p50 and p99 is not None else ""),
    }


def _observability(results: dict[str, Any]) -> dict[str, Any] | None:
    """Request id, access log line and metrics together: ceiling+all (which adds the
    path's validation too) over ceiling+validation."""
    costs = results.get("ceiling_costs_us_per_request") or {}
    if "ceiling+all" not in costs or "ceiling+validation" not in costs:
        return None
    tax = costs["ceiling+all"] - costs["ceiling+validation"]
    return {
        "target": "request id + access log + metrics <= 40 µs of worker CPU per request",
        "passed": tax <= 40,
        "detail": f"ceiling+all {costs['ceiling+all']:+.0f} - ceiling+validation "
        f"{costs['ceiling+validation']:+.0f} = {tax:.0f} µs/req",
    }


def _hot(scenarios: dict[str, Any]) -> dict[str, Any] | None:
    target = _at_least(
        "hot >= 0.5x allocate req/s, 0 errors, 0 oversold", scenarios, "hot", "allocate", 0.5
    )
    if target is None:
        return None
    hot = scenarios["hot"]
    errors, oversold = hot.get("errors", 0), len(hot.get("oversold_batches") or [])
    target["passed"] = target["passed"] and errors == 0 and oversold == 0
    target["detail"] += f"; {errors} errors, {oversold} batches oversold"
    return target


def _hold(scenarios: dict[str, Any]) -> dict[str, Any] | None:
    """A place-then-confirm pair per second is at least half an allocation per second."""
    if "hold" not in scenarios or "allocate" not in scenarios:
        return None
    pairs, allocate = scenarios["hold"].get("pairs_per_second"), scenarios["allocate"].get("rps")
    errors = scenarios["hold"].get("errors", 0)
    return {
        "target": "hold place+confirm pairs/s >= 0.5x allocate req/s, 0 errors",
        "passed": bool(pairs and allocate and pairs >= 0.5 * allocate and errors == 0),
        "detail": f"{_num(pairs)} pairs/s = "
        + (f"{pairs / allocate:.3f}x" if pairs and allocate else "-")
        + f" allocate {_num(allocate)} req/s; {errors} errors",
    }


def _growth(scenarios: dict[str, Any]) -> dict[str, Any] | None:
    levels = sorted(
        (row["existing_allocations"], name)
        for name, row in scenarios.items()
        if name.startswith("growth-") and "existing_allocations" in row
    )
    if len(levels) < 2 or levels[0][0] != 0:
        return None
    first = scenarios[levels[0][1]]["latency_ms"]["mean"]
    largest_n, largest = levels[-1][0], scenarios[levels[-1][1]]["latency_ms"]["mean"]
    return {
        "target": "growth: mean latency at the largest level <= 1.5x at 0",
        "passed": bool(first and largest <= 1.5 * first),
        "detail": f"{largest:.2f} ms on {largest_n:,} allocations vs {first:.2f} ms on 0"
        + (f" ({largest / first:.2f}x)" if first else ""),
    }


def _memory(memory: dict[str, Any]) -> dict[str, Any] | None:
    if "before_long_run_kib" not in memory or "after_long_run_kib" not in memory:
        return None
    before = sum(v or 0 for v in memory["before_long_run_kib"].values()) / 1024
    after = sum(v or 0 for v in memory["after_long_run_kib"].values()) / 1024
    return {
        "target": "worker RSS after the long run <= 1.1x before",
        "passed": bool(before and after <= 1.1 * before),
        "detail": f"{before:.1f} MiB -> {after:.1f} MiB"
        + (f" ({after / before:.3f}x)" if before else ""),
    }


def _checks(checks: dict[str, Any]) -> dict[str, Any] | None:
    if not checks:
        return None
    failed = failed_checks(checks)
    return {
        "target": "end-of-run checks all green",
        "passed": not failed,
        "detail": "; ".join(failed) if failed else "all green",
    }


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target whose rows ran, as {target, passed, detail}."""
    s = results["scenarios"]
    candidates = [
        _observability(results),
        _at_least("read >= 0.9x ceiling+db (same query, bare route)", s, "read", "ceiling+db", 0.9),
        _at_least(
            "availability >= 0.9x ceiling+db-availability (same query, bare route)",
            s,
            "availability",
            "ceiling+db-availability",
            0.9,
        ),
        _read_tail(s),
        _at_least("allocate >= 0.30x baseline-allocate", s, "allocate", "baseline-allocate", 0.30),
        _hold(s),
        _hot(s),
        _growth(s),
        _memory(results.get("memory") or {}),
        _checks(results.get("checks") or {}),
    ]
    return [target for target in candidates if target is not None]
