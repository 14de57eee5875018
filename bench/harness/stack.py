"""Starting and stopping the system under test: PostgreSQL, Redis, the API, relay and consumer."""

from __future__ import annotations

import os
import signal
import subprocess

from bench.harness.config import DB_NAME
from bench.harness.context import Run
from bench.harness.database import Database
from bench.harness.processes import NotServing, Service, wait_http, wait_workers
from devtools.servers import PostgresServer, RedisServer, free_port


def _service_env(run: Run, db_url: str, redis_url: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "API_TOKEN") and not k.startswith("PG")
    }
    env.update(DATABASE_URL=db_url, REDIS_URL=redis_url, LOG_LEVEL="INFO")
    if run.config.src:
        # Found before the editable install of this repository's src/.
        env["PYTHONPATH"] = run.config.src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start_databases(run: Run) -> str:
    """Starts PostgreSQL (with pg_stat_statements) and Redis; returns the database URL."""
    run.log("starting PostgreSQL and Redis")
    run.pg = PostgresServer(
        settings={
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "top",
            "max_connections": "200",
        }
    )
    run.pg.start()
    run.redis = RedisServer()
    run.redis.start()
    run.db = Database(run.pg.port)
    return run.pg.create_database(DB_NAME)


def _migrate(run: Run) -> None:
    run.log("migrating")
    migrate = subprocess.run(
        [run.config.allocation_bin, "migrate"],
        env=run.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if migrate.returncode != 0:
        raise SystemExit(f"allocation migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
    run.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    # The SQL baseline and the direct-SQL seeding follow whichever schema this is.
    assert run.db is not None
    run.batch_counter = run.db.has_batch_counter()
    run.results["schema"] = {"batches_allocated_quantity": run.batch_counter}


def _services(run: Run) -> dict[str, Service]:
    binary, env, c = run.config.allocation_bin, run.env, run.config
    api_args = [binary, "api", "--host", "127.0.0.1", "--port", str(run.port)]
    api_args += ["--workers", str(c.workers), "--threads", str(c.threads)]
    return {
        "api": Service("api", api_args, env, run.logs / "api.log", port=run.port),
        "relay": Service("relay", [binary, "relay"], env, run.logs / "relay.log"),
        "consumer": Service("consumer", [binary, "consumer"], env, run.logs / "consumer.log"),
    }


def start(run: Run) -> None:
    missing = [
        name
        for name, path in (("wrk", run.wrk_binary), ("pgbench", run.pgbench_binary))
        if not path
    ]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: apt-get install wrk postgresql (see bench/README.md)"
        )
    db_url = _start_databases(run)
    assert run.redis is not None
    run.port = free_port()
    run.env = _service_env(run, db_url, run.redis.url)
    _migrate(run)
    run.services = _services(run)
    for service in run.services.values():
        service.start()
    c = run.config
    run.log(f"serving on 127.0.0.1:{run.port} ({c.workers} workers x {c.threads} threads)")
    try:
        wait_http(run.port, "/health", list(run.services.values()))
    except NotServing as error:
        raise SystemExit(f"the API did not become healthy: {error}") from None
    wait_workers(run.api, c.workers)
    run.worker_pids()


def stop(run: Run) -> None:
    """Stops everything started."""
    while run.app_servers:
        run.app_servers.pop().stop()
    for name, service in run.services.items():
        code = service.stop()
        if code not in (0, None, -signal.SIGTERM):
            run.note(f"{name} exited with status {code} on SIGTERM")
    if run.db is not None:
        run.db.close()
    for server in (run.redis, run.pg):
        if server is not None:
            server.stop()
