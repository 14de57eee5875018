"""WSGI servers compared on this machine: gunicorn (sync, gthread), granian (serve(), as
shipped) and uWSGI, each serving the ceiling app and the real service (read and allocate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench.harness import appservers
from bench.harness.config import Config
from bench.harness.context import Run
from bench.harness.figures import api_cpu_us
from bench.harness.loadgen import allocate_args
from bench.harness.measure import measure, ms
from devtools.servers import free_port

GTHREADS = 4  # gunicorn gthread's threads per worker in the comparison


@dataclass(frozen=True)
class Server:
    key: str
    label: str
    command: Callable[[str, int], list[str]]  # (app in bench/apps.py, port) -> argv
    workers: int
    own_metrics_dir: bool = True  # serve() makes its own; the others get one from us


def _wsgi(app: str) -> str:
    return f"{app}_wsgi"  # bench.apps.ceiling_wsgi / service_wsgi


def servers(c: Config) -> list[Server]:
    """The servers to compare, each in the two shapes that make sense on this machine:
    W = the API's worker count (threaded), 2W single-threaded processes; without
    duplicates."""
    w, t, single = c.workers, c.threads, 2 * c.workers
    candidates = [
        Server(
            f"gunicorn-sync-{single}",
            f"gunicorn sync -w {single}",
            lambda app, port: appservers.gunicorn_command(_wsgi(app), port, single, None),
            single,
        ),
        Server(
            f"gunicorn-gthread-{w}",
            f"gunicorn gthread -w {w} --threads {GTHREADS}",
            lambda app, port: appservers.gunicorn_command(_wsgi(app), port, w, GTHREADS),
            w,
        ),
        Server(
            "granian",
            f"granian -w {w} --threads {t} (serve(), as shipped)",
            lambda app, port: appservers.serve_app_command(app, port, w, t),
            w,
            own_metrics_dir=False,
        ),
        Server(
            f"granian-{single}x1",
            f"granian -w {single} --threads 1 (serve())",
            lambda app, port: appservers.serve_app_command(app, port, single, 1),
            single,
            own_metrics_dir=False,
        ),
        Server(
            f"uwsgi-{single}",
            f"uWSGI --processes {single}",
            lambda app, port: appservers.uwsgi_command(_wsgi(app), port, single),
            single,
        ),
    ]
    unique: dict[str, Server] = {}
    for server in candidates:
        unique.setdefault(server.label, server)
    return list(unique.values())


def _paths(run: Run, server: Server, app: str) -> list[tuple[str, str, list[str]]]:
    """(path, wrk script, its arguments) measured on `app`."""
    c = run.config
    read = ("read.lua", ["read-", str(c.read_orders)])
    if app == "ceiling":
        return [("ceiling", *read)]
    # Unique order ids per server (and per run: the database is new each run).
    allocating = allocate_args(c.wrk_threads, f"srv-{server.key}-", "alloc-sku-", c.skus, 0)
    return [("read", *read), ("allocate", "allocate.lua", allocating)]


def _row(server: Server, app: str, path: str, result: dict[str, Any]) -> dict[str, Any]:
    lat = result["latency_ms"]
    return {
        "server": server.label,
        "key": server.key,
        "app": app,
        "path": path,
        "requests": result.get("requests"),
        "rps": result.get("rps"),
        "p50_ms": lat.get("p50"),
        "p99_ms": lat.get("p99"),
        "non_2xx": result.get("non_2xx"),
        "socket_errors": result.get("socket_errors"),
        "api_cpu_us_per_request": api_cpu_us(result),
        "accept_queue": result.get("accept_queue"),
        "statuses": result.get("statuses"),
        "error_messages": result.get("error_messages"),
        "cpu_s": result["cpu_s"],
    }


def _serve_and_measure(run: Run, server: Server, app: str) -> list[dict[str, Any]]:
    c = run.config
    port = free_port()
    probe = "/health" if app == "service" else "/allocations/probe"
    name = f"{server.key} {app}"
    running = appservers.launch(
        run, name, server.command(app, port), port, server.workers, probe, server.own_metrics_dir
    )
    if running is None:
        return [{"server": server.label, "key": server.key, "app": app, "failed": True}]
    rows = []
    try:
        for path, script, args in _paths(run, server, app):
            appservers.warm_up(run, running, script, args, 1 if c.quick else 2)
            load = partial(
                run.wrk().run, port, script, args, c.servers_seconds, label=f"{server.key}-{path}"
            )
            name = f"servers {server.key} {path}"
            result = measure(run, name, server.label, load, running.service, warn_waiting=False)
            rows.append(_row(server, app, path, result))
            run.log(
                f"{server.label} {path}: {result['rps']} req/s, "
                f"p50 {ms(result['latency_ms']['p50'])} ms, "
                f"p99 {ms(result['latency_ms']['p99'])} ms, non-2xx {result['non_2xx']}"
            )
    finally:
        appservers.stop(run, running)
    return rows


def compare_servers(run: Run) -> None:
    c = run.config
    rows: list[dict[str, Any]] = []
    for server in servers(c):
        for app in ("ceiling", "service"):
            rows += _serve_and_measure(run, server, app)
    run.results["servers"] = {
        "seconds": c.servers_seconds,
        "connections": c.connections,
        "workers": c.workers,
        "rows": rows,
    }
