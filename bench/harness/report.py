"""The printed report: the scenarios table, the ceiling and servers tables, the summary
lines, the targets and the notes."""

from __future__ import annotations

from typing import Any

from bench.harness.figures import BASELINE_OF
from bench.harness.measure import ms


def num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _us(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+,.0f}" if signed else f"{value:,.0f}"


def _waiting(row: dict[str, Any]) -> str:
    queue = row.get("accept_queue")
    return "-" if not queue else f"{queue['mean']:.1f}"


def _is_main_row(row: dict[str, Any]) -> bool:
    return row.get("row_group") != "ceiling"


def _notes(name: str, s: dict[str, Any]) -> list[str]:
    notes = []
    if s.get("out_of_stock"):
        notes.append(f"{s['out_of_stock']} out of stock (409)")
    if s.get("errors"):
        kinds = [
            f"{n} x {k}"
            for k, n in (s.get("error_messages") or {}).items()
            if "Out of stock" not in k
        ]
        notes.append(f"{s['errors']} errors" + (f" ({'; '.join(kinds[:3])})" if kinds else ""))
    if s["tool"] == "wrk" and s.get("conflicts_retried") is not None and name != "read":
        notes.append(f"{s['conflicts_retried']} conflicts retried")
    if "allocated_units" in s:
        notes.append(
            f"{s['allocated_units']}/{s['stock']} units sold, "
            f"oversold batches: {len(s['oversold_batches'])}"
        )
    if "existing_allocations" in s:
        notes.append(
            f"{s['requests']} sequential requests on {s['existing_allocations']:,} allocations"
        )
    if s["tool"] == "pgbench":
        notes.append("pgbench -M prepared")
    queue = s.get("accept_queue") or {}
    if queue.get("mean", 0) >= 0.5:
        notes.append(f"{queue['mean']:.1f} of {s['connections']} conns waiting to be accepted")
    if s.get("ratio_to_ceiling") is not None:
        notes.append(f"{s['ratio_to_ceiling']:.3f}x ceiling")
    if s.get("p99_over_p50") is not None:
        notes.append(f"p99/p50 {s['p99_over_p50']:.1f}")
    cpu = s.get("cpu_ms_per_request") or {}
    if cpu and s["tool"] != "pgbench":
        notes.append(f"CPU ms/req: api {cpu['api']:.2f}, pg {cpu['postgres']:.2f}")
    return notes


def scenarios_table(scenarios: dict[str, Any]) -> str | None:
    if not any(_is_main_row(s) for s in scenarios.values()):
        return None
    lines = [
        "| scenario | req/s | p50 ms | p90 ms | p99 ms | non-2xx | vs SQL baseline | notes |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, s in scenarios.items():
        if not _is_main_row(s):
            continue
        lat = s["latency_ms"]
        ratio = ""
        if s.get("ratio_to_baseline") is not None and BASELINE_OF.get(name) in scenarios:
            ratio = f"{s['ratio_to_baseline']:.3f}x"
        lines.append(
            f"| {name} | {num(s.get('rps'))} | {ms(lat.get('p50'))} | {ms(lat.get('p90'))} "
            f"| {ms(lat.get('p99'))} | {s.get('non_2xx', 0)} | {ratio or '-'} "
            f"| {'; '.join(_notes(name, s))} |"
        )
    return "\n".join(lines)


def ceiling_table(results: dict[str, Any]) -> str | None:
    scenarios = results["scenarios"]
    rows = [(n, s) for n, s in scenarios.items() if not _is_main_row(s)]
    if not rows:
        return None
    base = (scenarios.get("ceiling") or {}).get("api_cpu_us_per_request")
    config = results["config"]
    lines = [
        "what each piece costs over the ceiling (GET /allocations/<orderid> like `read`, "
        f"serve() with {config['workers']} workers x {config['threads']} threads, "
        f"{config['connections']} connections, {config['ceiling_seconds']} s each):",
        "| row | req/s | p50 ms | p99 ms | non-2xx | conns waiting | API CPU µs/req "
        "| over ceiling µs/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    read = scenarios.get("read")
    if read:
        rows.append(("read (the service)", read))
    for name, s in rows:
        lat = s["latency_ms"]
        cpu = s.get("api_cpu_us_per_request")
        over = None if name == "ceiling" or cpu is None or base is None else cpu - base
        lines.append(
            f"| {name} | {num(s.get('rps'))} | {ms(lat.get('p50'))} | {ms(lat.get('p99'))} "
            f"| {s.get('non_2xx', 0)} | {_waiting(s)} | {_us(cpu)} | {_us(over, signed=True)} |"
        )
    return "\n".join(lines)


def servers_table(servers: dict[str, Any] | None) -> str | None:
    if not servers or not servers.get("rows"):
        return None
    lines = [
        f"WSGI servers on this machine (wrk, {servers['connections']} connections, "
        f"{servers['seconds']} s per row; API CPU = the server's process tree):",
        "| server | app | path | req/s | p50 ms | p99 ms | non-2xx | socket errors "
        "| conns waiting | API CPU µs/req |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in servers["rows"]:
        if row.get("failed"):
            lines.append(f"| {row['server']} | {row['app']} | - | did not start | | | | | | |")
            continue
        socket_errors = sum((row.get("socket_errors") or {}).values())
        lines.append(
            f"| {row['server']} | {row['app']} | {row['path']} | {num(row['rps'])} "
            f"| {ms(row['p50_ms'])} | {ms(row['p99_ms'])} | {row['non_2xx']} "
            f"| {socket_errors} | {_waiting(row)} | {_us(row['api_cpu_us_per_request'])} |"
        )
    lines.append(
        "(socket errors: connections a server closed after answering without saying so, "
        "e.g. uWSGI's --http-socket, which wrk counts as read errors; conns waiting: the "
        "mean number of connections in the server's accept queue)"
    )
    return "\n".join(lines)


def _machine_line(results: dict[str, Any]) -> str:
    m, versions, config = results["machine"], results["versions"], results["config"]
    service = (
        f"service {versions['service_commit']} "
        f"(+{versions['service_uncommitted_files']} uncommitted files); "
        if versions.get("service_commit")
        else f"service from {versions.get('service_src')}; "
    )
    return (
        f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB; "
        + service
        + f"{config['workers']} workers x {config['threads']} threads; "
        f"run took {results.get('wall_seconds')} s"
    )


def _memory_line(mem: dict[str, Any]) -> str | None:
    if "before_long_run_kib" not in mem:
        return None

    def mib(readings: dict[str, int | None]) -> float:
        return sum(v or 0 for v in readings.values()) / 1024

    before, after = mem["before_long_run_kib"], mem["after_long_run_kib"]
    per_worker = ", ".join(
        f"{(before.get(pid) or 0) / 1024:.1f} -> {(v or 0) / 1024:.1f}" for pid, v in after.items()
    )
    return (
        f"worker RSS: idle {mib(mem['idle_kib']):.1f} MiB; "
        f"before the long run ({mem['long_run_requests']:,} requests) {mib(before):.1f} MiB, "
        f"after {mib(after):.1f} MiB (per worker: {per_worker})"
    )


def _checks_line(checks: dict[str, Any]) -> str | None:
    if not checks:
        return None
    drift = checks.get("batches_whose_allocated_quantity_disagrees")
    return (
        f"checks: oversold batches {len(checks['oversold_batches'])}; "
        + (
            ""
            if drift is None
            else f"batches whose allocated_quantity != sum of lines {len(drift)}; "
        )
        + f"allocations {checks['allocations']:,} = "
        f"view rows {checks['allocations_view_rows']:,} = "
        f"line_allocated messages {checks['line_allocated_outbox_rows']:,}: "
        f"{checks['every_allocation_has_view_row_and_message']}; outbox drained "
        f"{checks['outbox_drained_after_s']} s after the last scenario; "
        f"workers replaced: {len(checks['workers_replaced_during_run'])}"
    )


def targets_section(targets: list[dict[str, Any]]) -> str | None:
    if not targets:
        return None
    passed = sum(1 for t in targets if t["passed"])
    lines = [f"targets ({passed}/{len(targets)} pass):"]
    for t in targets:
        lines.append(f"  {'PASS' if t['passed'] else 'FAIL'}  {t['target']}: {t['detail']}")
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    out = [""]
    tables = (
        scenarios_table(results["scenarios"]),
        ceiling_table(results),
        servers_table(results.get("servers")),
    )
    for table in tables:
        if table:
            out += [table, ""]
    out.append(_machine_line(results))
    for line in (_memory_line(results["memory"]), _checks_line(results.get("checks") or {})):
        if line:
            out.append(line)
    for mode, p in (results.get("profile") or {}).items():
        top = ", ".join(f"{k} {v}%" for k, v in list(p["buckets_pct"].items())[:7])
        out.append(f"py-spy {mode} ({p['samples']} samples): {top}")
    targets = targets_section(results.get("targets") or [])
    if targets:
        out += ["", targets]
    for note in results.get("notes", []):
        out.append(f"note: {note}")
    return "\n".join(out)
