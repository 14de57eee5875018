"""The ceiling rows: bare Flask apps (bench/apps.py) under the API's server and settings,
driven like the `read` row, with the per-request pieces added one at a time."""

from __future__ import annotations

from functools import partial

from bench.harness import appservers
from bench.harness.context import Run
from bench.harness.measure import measured
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
    """One server per row, started, warmed up, measured like `read`, stopped."""
    c = run.config
    read_args = ["read-", str(c.read_orders)]
    for app, what in CEILING_ROWS.items():
        port = free_port()
        argv = appservers.serve_app_command(app, port, c.workers, c.threads)
        server = appservers.launch(run, app, argv, port, c.workers, "/allocations/probe")
        if server is None:
            continue
        try:
            appservers.warm_up(run, server, "read.lua", read_args, WARM_UP_SECONDS)
            measured(
                run,
                app,
                f"{what}; GET /allocations/<orderid> like `read`, serve() with "
                f"{c.workers} workers x {c.threads} threads, {c.connections} connections",
                partial(run.wrk().run, port, "read.lua", read_args, c.ceiling_seconds, label=app),
                server=server.service,
                extra={"app": app, "row_group": "ceiling"},
            )
            if app == "ceiling+db":
                _availability_db(run, server, port)
        finally:
            appservers.stop(run, server)


def _availability_db(run: Run, server: appservers.AppServer, port: int) -> None:
    """The bare route with the availability path's query, driven like `availability`."""
    c = run.config
    args = ["read-sku-", str(c.skus)]
    measured(
        run,
        "ceiling+db-availability",
        "a plain Flask route answering from SqlReadModel.availability; GET "
        f"/availability/<sku>?qty=N like `availability`, {c.connections} connections",
        partial(run.wrk().run, port, "availability.lua", args, c.ceiling_seconds, label="avail-db"),
        server=server.service,
        extra={"app": "ceiling+db", "row_group": "ceiling"},
    )
