"""The ceiling rows: bare Flask apps (bench/apps.py) under the API's server and settings,
driven like the `read` row, with the per-request pieces added one at a time."""

from __future__ import annotations

from bench.harness import appservers
from bench.harness.context import Run
from bench.harness.measure import Row, interleaved
from devtools.servers import free_port

# Row (= app in bench/apps.py) and what it adds to the ceiling.
CEILING_ROWS = {
    "ceiling": "a plain Flask app, one route answering a constant JSON list",
    "ceiling+request-id": "the ceiling + request ids (observability Pieces(request_ids=True))",
    "ceiling+log": "the ceiling + the access log line at INFO (Pieces(access_log=True))",
    "ceiling+metrics": "the ceiling + request metrics, multiprocess (Pieces(metrics=True))",
    "ceiling+validation": "the ceiling + schemas.parse_orderid on the path",
    "ceiling+all": "the ceiling + request ids, access log, metrics and validation",
    "ceiling+db": "a plain Flask route answering from SqlReadModel.allocations_for_order",
}
PIECES = [row for row in CEILING_ROWS if row != "ceiling"]
WARM_UP_SECONDS = 1


def ceiling(run: Run) -> None:
    """One server per row, all started and warmed up first, then measured like `read`
    in alternating slices: the pieces cost tens of µs, less than this machine drifts
    between rows measured one after the other."""
    servers: list[appservers.AppServer] = []
    try:
        rows: list[Row] = []
        for app, what in CEILING_ROWS.items():
            server = _started(run, app)
            if server is None:
                continue
            servers.append(server)
            rows.append(_read_row(run, app, what, server))
            if app == "ceiling+db":
                rows.append(_availability_db_row(run, server))
        interleaved(run, rows, run.config.ceiling_seconds, run.config.paired_slices)
    finally:
        for server in servers:
            appservers.stop(run, server)


def _started(run: Run, app: str) -> appservers.AppServer | None:
    c = run.config
    port = free_port()
    argv = appservers.serve_app_command(app, port, c.workers, c.threads)
    server = appservers.launch(run, app, argv, port, c.workers, "/allocations/probe")
    if server is not None:
        read_args = ["read-", str(c.read_orders)]
        appservers.warm_up(run, server, "read.lua", read_args, WARM_UP_SECONDS)
    return server


def _read_row(run: Run, app: str, what: str, server: appservers.AppServer) -> Row:
    c = run.config
    read_args = ["read-", str(c.read_orders)]
    return Row(
        app,
        f"{what}; GET /allocations/<orderid> like `read`, serve() with "
        f"{c.workers} workers x {c.threads} threads, {c.connections} connections",
        lambda seconds, label: run.wrk().run(
            server.port, "read.lua", read_args, seconds, label=label
        ),
        server=server.service,
        extra={"app": app, "row_group": "ceiling"},
    )


def _availability_db_row(run: Run, server: appservers.AppServer) -> Row:
    """The bare route with the availability path's query, driven like `availability`."""
    c = run.config
    args = ["read-sku-", str(c.skus)]
    return Row(
        "ceiling+db-availability",
        "a plain Flask route answering from SqlReadModel.availability; GET "
        f"/availability/<sku>?qty=N like `availability`, {c.connections} connections",
        lambda seconds, label: run.wrk().run(
            server.port, "availability.lua", args, seconds, label=label
        ),
        server=server.service,
        extra={"app": "ceiling+db", "row_group": "ceiling"},
    )
