"""The state one run shares between its steps: config, servers, results, log and load generators."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness.config import RESULTS, Config
from bench.harness.database import Database
from bench.harness.loadgen import Pgbench, Wrk, find_pgbench, find_wrk
from bench.harness.processes import Service, workers_of
from bench.harness.procstat import rss_kib
from devtools.servers import PostgresServer, RedisServer


def _empty_results() -> dict[str, Any]:
    return {"scenarios": {}, "memory": {}, "checks": {}, "notes": []}


@dataclass
class Run:
    config: Config
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    results: dict[str, Any] = field(default_factory=_empty_results)
    wrk_binary: str | None = field(default_factory=find_wrk)
    pgbench_binary: str | None = field(default_factory=find_pgbench)
    pg: PostgresServer | None = None
    redis: RedisServer | None = None
    db: Database | None = None
    services: dict[str, Service] = field(default_factory=dict)  # API, relay, consumer
    app_servers: list[Service] = field(default_factory=list)  # running for a comparison
    port: int = 0  # the API's
    env: dict[str, str] = field(default_factory=dict)  # the services' environment
    batch_counter: bool = False
    worker_pids_seen: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.stamp = self.started_at.strftime("%Y%m%dT%H%M%SZ")
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.logs: Path = RESULTS / f"{self.stamp}-logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def log(self, message: str) -> None:
        elapsed = (datetime.now(UTC) - self.started_at).total_seconds()
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        self.results["notes"].append(message)

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        assert self.db is not None
        return self.db.sql(query, params)

    @property
    def api(self) -> Service:
        return self.services["api"]

    def wrk(self) -> Wrk:
        assert self.wrk_binary is not None
        c = self.config
        return Wrk(self.wrk_binary, c.wrk_threads, c.connections, self.logs)

    def pgbench(self) -> Pgbench:
        assert self.pgbench_binary is not None and self.pg is not None
        c = self.config
        return Pgbench(
            self.pgbench_binary,
            self.pg.port,
            c.connections,
            c.wrk_threads,
            self.logs,
            self.batch_counter,
        )

    def worker_pids(self, server: Service | None = None) -> list[int]:
        """The workers of `server` (by default the API's, which are also remembered
        so that the end-of-run check can tell whether any was replaced)."""
        pids = workers_of(server or self.services.get("api"))
        if server is None or server is self.services.get("api"):
            self.worker_pids_seen.update(pids)
        return pids

    def worker_rss(self, server: Service | None = None) -> dict[str, int | None]:
        return {str(pid): rss_kib(pid) for pid in self.worker_pids(server)}
