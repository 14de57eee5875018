"""App servers started beside the API for a comparison: command lines, start, warm-up, stop."""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.harness.config import BENCH, ROOT
from bench.harness.context import Run
from bench.harness.processes import NotServing, Service, wait_http, wait_workers

BIN = Path(sys.executable).parent


def serve_app_command(app: str, port: int, workers: int, threads: int) -> list[str]:
    """bench/serve_app.py: one of bench/apps.py's apps through serve(), as `allocation api`."""
    return [
        sys.executable,
        str(BENCH / "serve_app.py"),
        app,
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(workers), "--threads", str(threads)),
    ]


def gunicorn_command(entry: str, port: int, workers: int, threads: int | None) -> list[str]:
    """gunicorn with sync workers (threads None) or gthread workers."""
    kind = ["-k", "sync"] if threads is None else ["-k", "gthread", "--threads", str(threads)]
    return [
        str(BIN / "gunicorn"),
        *kind,
        *("-w", str(workers), "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"),
        f"bench.apps:{entry}",
    ]


def uwsgi_command(entry: str, port: int, workers: int) -> list[str]:
    """uWSGI from the pyuwsgi package: prefork workers, each loading the app itself."""
    return [
        str(BIN / "uwsgi"),
        *("--http-socket", f"127.0.0.1:{port}", "--master", "--processes", str(workers)),
        *("--die-on-term", "--lazy-apps", "--disable-logging", "--need-app"),
        *("--pythonpath", str(ROOT), "--module", f"bench.apps:{entry}"),
    ]


@dataclass
class AppServer:
    """A running app server, with the metrics directory we made for it (if any)."""

    service: Service
    port: int
    metrics_dir: str | None = None


def launch(
    run: Run,
    name: str,
    argv: list[str],
    port: int,
    workers: int,
    probe: str,
    own_metrics_dir: bool = False,
) -> AppServer | None:
    """Starts a server, waits until `probe` answers (any status below 500) and its
    workers are up. None, with a note, when it does not come up."""
    env = dict(run.env)
    metrics_dir = None
    if own_metrics_dir:  # what serve() does for granian, for the other servers
        metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-")
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    log_name = name.replace("+", "-").replace(" ", "-")
    service = Service(name, argv, env, run.logs / f"server-{log_name}.log", port=port)
    service.start(cwd=ROOT)
    run.app_servers.append(service)
    server = AppServer(service, port, metrics_dir)
    try:
        wait_http(port, probe, [service], ok=lambda status: status < 500)
    except NotServing as error:
        run.note(f"{name} did not start; skipped (see its log in the logs directory)")
        run.log(f"WARNING {name}: {error}")
        stop(run, server)
        return None
    if len(wait_workers(service, workers)) < workers:
        run.note(f"{name}: fewer than {workers} workers after 30 s")
    return server


def stop(run: Run, server: AppServer) -> None:
    server.service.stop()
    if server.service in run.app_servers:
        run.app_servers.remove(server.service)
    if server.metrics_dir is not None:
        shutil.rmtree(server.metrics_dir, ignore_errors=True)


def warm_up(run: Run, server: AppServer, script: str, args: list[str], seconds: int) -> None:
    """An unmeasured wrk run, so that every worker has built its app and warmed its caches."""
    path = script.removesuffix(".lua")
    label = f"warm-{server.service.name}-{path}".replace("+", "-").replace(" ", "-")
    run.wrk().run(server.port, script, args, duration=seconds, label=label)
