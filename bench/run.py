#!/usr/bin/env python3
"""Benchmark of the allocation service as it ships, in one command.

    .venv/bin/python bench/run.py [--duration 20] [--quick] [--long-run 100000] [--profile]

Starts throwaway PostgreSQL and Redis (tests/servers.py), migrates, serves the
API with gunicorn (`allocation api`), runs `allocation relay` and `allocation
consumer`, seeds data through the HTTP API, drives load with wrk (Lua scripts in
bench/wrk/) and pgbench (scripts in bench/pgbench/) from separate processes,
then prints one table and writes JSON to bench/results/. See bench/README.md.

Only processes started here are ever signalled, by their PID.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import http.client
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WRK_DIR = BENCH / "wrk"
PGBENCH_DIR = BENCH / "pgbench"
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402  (installed with the service)

from tests.servers import PostgresServer, RedisServer, free_port  # noqa: E402

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")
DB_NAME = "allocation_bench"
# What the bus logs (INFO) each time it runs a command again after losing a race.
CONFLICT_LOG = re.compile(rb"concurrency conflict in")
MAX_QTY = 1_000_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")

ALL_SCENARIOS = ("allocate", "hot", "read", "growth", "long")


# ---------------------------------------------------------------------------
# configuration


@dataclass
class Config:
    duration: int = 20
    connections: int = 8
    wrk_threads: int = 2
    workers: int = 2
    threads: int = 4
    skus: int = 100
    read_orders: int = 10_000
    growth_levels: tuple[int, ...] = (0, 1_000, 10_000, 50_000)
    growth_samples: int = 200
    growth_seconds: float = 12.0  # per level, at most (but at least growth_min_samples)
    growth_min_samples: int = 10
    long_run: int = 10_000
    hot_batches: int = 4
    profile: bool = False
    profile_seconds: int = 10
    scenarios: tuple[str, ...] = ALL_SCENARIOS
    quick: bool = False
    src: str | None = None
    allocation_bin: str = str(Path(sys.executable).with_name("allocation"))


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=int, help="seconds per load scenario (default 20; 5 with --quick)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 5 s scenarios, 2,000 read orders, growth up to 10,000, "
        "long run of 2,000",
    )
    parser.add_argument(
        "--long-run",
        type=int,
        metavar="N",
        help="allocations sent between the two worker-memory readings "
        "(default 10,000; e.g. 100000 for the long run; 0 skips it)",
    )
    parser.add_argument(
        "--connections", type=int, default=8, help="HTTP connections / pgbench clients"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="gunicorn workers (service default 2)"
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per worker (service default 4)"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the scenarios, sample the API workers with py-spy during an "
        "extra (unmeasured) allocate run and summarise where time goes",
    )
    parser.add_argument(
        "--src",
        metavar="DIR",
        help="serve the service from another source tree (its src/ directory, e.g. "
        "a `git worktree` of an older commit) to compare versions; default: "
        "the installed package",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)} (for development)",
    )
    args = parser.parse_args(argv)

    config = Config(
        connections=args.connections,
        workers=args.workers,
        threads=args.threads,
        profile=args.profile,
        quick=args.quick,
    )
    if args.quick:
        config.duration = 5
        config.read_orders = 2_000
        config.growth_levels = (0, 1_000, 10_000)
        config.growth_samples = 30
        config.growth_seconds = 4.0
        config.growth_min_samples = 5
        config.long_run = 2_000
        config.profile_seconds = 5
    if args.duration is not None:
        config.duration = args.duration
    if args.long_run is not None:
        config.long_run = args.long_run
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = set(scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    config.scenarios = scenarios
    if args.src:
        src = Path(args.src).resolve()
        if not (src / "allocation" / "__init__.py").exists():
            parser.error(f"--src {src}: no allocation package there (pass the src/ directory)")
        config.src = str(src)
    if config.connections < config.wrk_threads:
        config.wrk_threads = config.connections
    return config


# ---------------------------------------------------------------------------
# processes we start


def _pdeathsig() -> Any:
    """Ask Linux to SIGTERM our children if this process dies without cleanup."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG

    return preexec


class Service:
    """One long-running `allocation …` process with its log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.args, self.env, self.log = name, args, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_pdeathsig(),
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def count_in_log(self, pattern: re.Pattern[bytes], since: int) -> int:
        count = 0
        with self.log.open("rb") as f:
            f.seek(since)
            for line in f:
                if pattern.search(line):
                    count += 1
        return count

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# ---------------------------------------------------------------------------
# /proc readings: CPU time by component, worker memory, machine


def _read_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime+cutime+cstime in ticks) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
    return int(rest[1]), int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])


def _process_table() -> dict[int, tuple[int, int]]:
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    return table


def _tree_ticks(root: int, table: dict[int, tuple[int, int]]) -> int:
    """CPU ticks of a process and all its live descendants, plus (through the
    children times of each) those of descendants that exited and were reaped."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _ticks) in table.items():
        children[ppid].append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1]
            stack.extend(children.get(pid, ()))
    return total


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def children_of(pid: int) -> list[int]:
    return sorted(p for p, (ppid, _t) in _process_table().items() if ppid == pid)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_info() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def _tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def _git(where: str | None, *args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=where or ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


# ---------------------------------------------------------------------------
# HTTP client for seeding and for single-request latency


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any, float]:
        payload = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        for attempt in range(2):
            try:
                started = time.perf_counter()
                self.conn.request(method, path, body=payload, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                elapsed = time.perf_counter() - started
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt:
                    raise
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode(errors="replace")
        return response.status, parsed, elapsed

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------------------
# the benchmark


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


class Bench:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_at = datetime.now(UTC)
        self.stamp = self.started_at.strftime("%Y%m%dT%H%M%SZ")
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.logs = RESULTS / f"{self.stamp}-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pg: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.services: dict[str, Service] = {}
        self.port = 0
        self.results: dict[str, Any] = {"scenarios": {}, "memory": {}, "checks": {}, "notes": []}
        self.worker_pids_seen: set[int] = set()
        self._conn: Any = None
        self.batch_counter = False
        self.wrk = shutil.which("wrk")
        self.pgbench = shutil.which("pgbench") or next(
            (str(Path(d) / "pgbench") for d in PG_BIN_DIRS if (Path(d) / "pgbench").exists()), None
        )

    # -- setup / teardown -----------------------------------------------------

    def log(self, message: str) -> None:
        elapsed = (datetime.now(UTC) - self.started_at).total_seconds()
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def start(self) -> None:
        missing = [
            name for name, path in (("wrk", self.wrk), ("pgbench", self.pgbench)) if not path
        ]
        if missing:
            raise SystemExit(
                f"missing {', '.join(missing)}: apt-get install wrk postgresql "
                "(see bench/README.md)"
            )
        self.log("starting PostgreSQL and Redis")
        self.pg = PostgresServer(
            settings={
                "shared_preload_libraries": "pg_stat_statements",
                "pg_stat_statements.track": "top",
                "max_connections": "200",
            }
        )
        self.pg.start()
        self.redis = RedisServer()
        self.redis.start()
        self.db_url = self.pg.create_database(DB_NAME)
        self.port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "API_TOKEN") and not k.startswith("PG")
        }
        env.update(DATABASE_URL=self.db_url, REDIS_URL=self.redis.url, LOG_LEVEL="INFO")
        if self.config.src:
            # Found before the editable install of /work/main/src.
            env["PYTHONPATH"] = self.config.src + os.pathsep + env.get("PYTHONPATH", "")
        self.env = env
        binary = self.config.allocation_bin
        self.log("migrating")
        migrate = subprocess.run(
            [binary, "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        if migrate.returncode != 0:
            raise SystemExit(f"allocation migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        self.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        # Since migration 0003 batches keep their allocated quantity; the SQL
        # baseline and the direct-SQL seeding follow whichever schema this is.
        self.batch_counter = bool(
            self.sql(
                "SELECT 1 FROM information_schema.columns "
                "WHERE table_name = 'batches' AND column_name = 'allocated_quantity'"
            )
        )
        self.results["schema"] = {"batches_allocated_quantity": self.batch_counter}
        self.services = {
            "api": Service(
                "api",
                [
                    binary,
                    "api",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.config.workers),
                    "--threads",
                    str(self.config.threads),
                ],
                env,
                self.logs / "api.log",
            ),
            "relay": Service("relay", [binary, "relay"], env, self.logs / "relay.log"),
            "consumer": Service("consumer", [binary, "consumer"], env, self.logs / "consumer.log"),
        }
        for service in self.services.values():
            service.start()
        self.log(
            f"serving on 127.0.0.1:{self.port} "
            f"({self.config.workers} workers x {self.config.threads} threads)"
        )
        self.wait_healthy()
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < self.config.workers and time.monotonic() < deadline:
            time.sleep(0.1)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, service in self.services.items():
                if not service.alive():
                    raise SystemExit(f"{name} exited during startup:\n{service.tail()}")
            try:
                client = Client(self.port)
                status, _body, _t = client.request("GET", "/health")
                client.close()
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the API did not become healthy:\n{self.services['api'].tail()}")

    def stop(self) -> None:
        for name in ("api", "relay", "consumer"):
            service = self.services.get(name)
            if service is not None:
                code = service.stop()
                if code not in (0, None, -signal.SIGTERM):
                    self.results["notes"].append(f"{name} exited with status {code} on SIGTERM")
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        for server in (self.redis, self.pg):
            if server is not None:
                server.stop()

    # -- database helpers -----------------------------------------------------

    def db(self) -> Any:
        if self._conn is None or self._conn.closed:
            assert self.pg is not None
            self._conn = psycopg2.connect(
                host="127.0.0.1",
                port=self.pg.port,
                user="postgres",
                dbname=DB_NAME,
                connect_timeout=10,
            )
            self._conn.autocommit = True
        return self._conn

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.db().cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def outbox_unsent(self) -> int:
        return int(self.sql("SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0][0])

    def wait_outbox_drained(self, timeout: float = 60) -> float | None:
        """Seconds until the relay has published everything; None on timeout."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.outbox_unsent() == 0:
                return time.monotonic() - started
            time.sleep(0.2)
        return None

    def pgss_reset(self) -> None:
        self.sql("SELECT pg_stat_statements_reset()")

    def pgss_top(self, limit: int = 10) -> dict[str, Any]:
        rows = self.sql(
            """SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time, rows
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                WHERE d.datname = %s AND query NOT ILIKE '%%pg_stat_statements%%'
                ORDER BY total_exec_time DESC""",
            (DB_NAME,),
        )
        total = sum(float(r[2]) for r in rows)
        calls = sum(int(r[1]) for r in rows)
        return {
            "exec_ms_total": round(total, 1),
            "calls_total": calls,
            "top": [
                {
                    "query": r[0][:160],
                    "calls": int(r[1]),
                    "total_ms": round(float(r[2]), 1),
                    "mean_ms": round(float(r[2]) / max(1, int(r[1])), 3),
                    "rows": int(r[3]),
                }
                for r in rows[:limit]
            ],
        }

    # -- process readings -----------------------------------------------------

    def worker_pids(self) -> list[int]:
        api = self.services.get("api")
        if api is None or not api.alive():
            return []
        pids = children_of(api.pid)
        self.worker_pids_seen.update(pids)
        return pids

    def worker_rss(self) -> dict[str, int | None]:
        return {str(pid): rss_kib(pid) for pid in self.worker_pids()}

    def cpu_snapshot(self) -> dict[str, Any]:
        table = _process_table()
        snap: dict[str, Any] = {"wall": time.monotonic(), "machine": _machine_ticks()}
        for name in ("api", "relay", "consumer"):
            service = self.services.get(name)
            snap[name] = _tree_ticks(service.pid, table) if service and service.proc else 0
        snap["postgres"] = _tree_ticks(self.pg.pid, table) if self.pg and self.pg.pid else 0
        snap["redis"] = _tree_ticks(self.redis.pid, table) if self.redis and self.redis.pid else 0
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        snap["loadgen_s"] = children.ru_utime + children.ru_stime
        snap["harness_s"] = me.ru_utime + me.ru_stime
        return snap

    @staticmethod
    def cpu_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        wall = after["wall"] - before["wall"]
        delta = {
            name: (after[name] - before[name]) / CLK_TCK
            for name in ("api", "postgres", "relay", "consumer", "redis")
        }
        # wrk / pgbench are our only children that exit during a measured window.
        delta["loadgen"] = after["loadgen_s"] - before["loadgen_s"]
        delta["harness"] = after["harness_s"] - before["harness_s"]
        busy = (after["machine"][0] - before["machine"][0]) / CLK_TCK
        total = (after["machine"][1] - before["machine"][1]) / CLK_TCK
        ours = sum(delta.values())
        delta["machine_busy"] = busy
        delta["other"] = max(0.0, busy - ours)
        delta["machine_capacity"] = total
        delta["wall"] = wall
        return {k: round(v, 2) for k, v in delta.items()}

    # -- load generators -------------------------------------------------------

    def run_wrk(
        self,
        script: str,
        script_args: list[str],
        duration: int | None = None,
        count: int | None = None,
        label: str = "",
    ) -> dict[str, Any]:
        """Runs wrk for `duration` seconds, or until `count` requests were answered."""
        config = self.config
        cmd = [
            self.wrk,
            "-t",
            str(config.wrk_threads),
            "-c",
            str(config.connections),
            "-d",
            f"{duration if duration else 3600}s",
            "--timeout",
            "30s",
            "-s",
            str(WRK_DIR / script),
            f"http://127.0.0.1:{self.port}",
            "--",
            *script_args,
        ]
        log_path = self.logs / f"wrk-{label or script}.txt"
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_pdeathsig(),
        )
        assert proc.stdout is not None
        lines: list[str] = []
        finished_threads: set[str] = set()
        finished_at: list[float] = []
        limit = duration + 60 if duration else max(120, (count or 0) / 20)

        def watchdog() -> None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

        timer = threading.Timer(limit, watchdog)
        timer.daemon = True
        timer.start()
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if line.startswith("WRK_THREAD_DONE"):
                    finished_threads.add(line.split()[1])
                    if len(finished_threads) >= config.wrk_threads:
                        finished_at.append(time.monotonic())
                        proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log_path.write_text("$ " + " ".join(cmd) + "\n" + "\n".join(lines) + "\n")
        result_line = next((x for x in lines if x.startswith("WRK_RESULT ")), None)
        if result_line is None:
            raise RuntimeError(
                f"wrk printed no result (exit {proc.returncode}):\n" + "\n".join(lines[-30:])
            )
        raw_result = json.loads(result_line[len("WRK_RESULT ") :])
        statuses = {int(k): v for k, v in raw_result["statuses"].items()}
        real = sum(statuses.values())
        if count:
            seconds = (finished_at[0] if finished_at else time.monotonic()) - started
        else:
            seconds = raw_result["duration_us"] / 1e6
        lat = raw_result["latency_us"]
        non_2xx = sum(n for s, n in statuses.items() if not 200 <= s < 300)
        socket_errors = sum(
            raw_result["errors"][k] for k in ("connect", "read", "write", "timeout")
        )
        return {
            "tool": "wrk",
            "connections": config.connections,
            "seconds": round(seconds, 2),
            "requests": real,
            "rps": round(real / seconds, 1) if seconds > 0 else None,
            "latency_ms": {
                "p50": lat["percentiles"]["50"] / 1000,
                "p90": lat["percentiles"]["90"] / 1000,
                "p99": lat["percentiles"]["99"] / 1000,
                "p99.9": lat["percentiles"]["99.9"] / 1000,
                "mean": (lat["mean"] or 0) / 1000,
                "max": (lat["max"] or 0) / 1000,
            },
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "non_2xx": non_2xx,
            "out_of_stock": raw_result["out_of_stock"],
            "errors": non_2xx - raw_result["out_of_stock"] + socket_errors,
            "error_messages": dict(
                sorted(raw_result.get("messages", {}).items(), key=lambda kv: -kv[1])
            ),
            "socket_errors": raw_result["errors"],
            "fillers": raw_result["fillers"],
            "wrk_exit": proc.returncode,
        }

    def run_pgbench(
        self, script: str, defines: dict[str, str], duration: int, label: str
    ) -> dict[str, Any]:
        assert self.pg is not None
        log_dir = self.logs / f"pgbench-{label}"
        log_dir.mkdir(exist_ok=True)
        cmd = [
            self.pgbench,
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.pg.port),
            "-U",
            "postgres",
            "-c",
            str(self.config.connections),
            "-j",
            str(self.config.wrk_threads),
            "-T",
            str(duration),
            "-M",
            "prepared",
            "-f",
            str(PGBENCH_DIR / script),
            "-l",
            f"--log-prefix={log_dir / 'tx'}",
        ]
        for key, value in {"counter": str(int(self.batch_counter)), **defines}.items():
            cmd += ["-D", f"{key}={value}"]
        cmd.append(DB_NAME)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=env,
            timeout=duration + 120,
            stdin=subprocess.DEVNULL,
        )
        (self.logs / f"pgbench-{label}.txt").write_text(
            "$ " + " ".join(cmd) + "\n" + out.stdout + "\n" + out.stderr
        )
        tps_match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
        latencies: list[float] = []
        for path in log_dir.iterdir():
            with path.open() as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3 and parts[2].isdigit():
                        latencies.append(int(parts[2]) / 1000)  # µs -> ms
        shutil.rmtree(log_dir, ignore_errors=True)
        failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
        aborted = out.stderr.count("aborted")
        if out.returncode != 0 or tps_match is None:
            self.results["notes"].append(
                f"pgbench {label} exited {out.returncode}: {out.stderr.strip()[-500:]}"
            )
        tps = float(tps_match.group(1)) if tps_match else None
        return {
            "tool": "pgbench",
            "connections": self.config.connections,
            "seconds": duration,
            "requests": len(latencies),
            "rps": round(tps, 1) if tps is not None else None,
            "latency_ms": {
                "p50": pct(latencies, 50),
                "p90": pct(latencies, 90),
                "p99": pct(latencies, 99),
                "p99.9": pct(latencies, 99.9),
                "mean": statistics.fmean(latencies) if latencies else None,
                "max": max(latencies) if latencies else None,
            },
            "non_2xx": int(failed.group(1)) if failed else 0,
            "errors": (int(failed.group(1)) if failed else 0) + aborted,
            "exit": out.returncode,
        }

    def measured(
        self, name: str, description: str, run: Any, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Runs a load generator with CPU, SQL statistics, conflict log lines and
        worker memory recorded around it."""
        api = self.services["api"]
        drained = self.wait_outbox_drained()
        if drained is None:
            self.results["notes"].append(f"before {name}: the outbox did not drain in 60 s")
        self.pgss_reset()
        log_offset = api.log_size()
        before = self.cpu_snapshot()
        self.log(f"{name}: {description}")
        result = run()
        after = self.cpu_snapshot()
        result["name"] = name
        result["description"] = description
        result["cpu_s"] = self.cpu_delta(before, after)
        requests = max(1, result.get("requests") or 1)
        result["cpu_ms_per_request"] = {
            k: round(result["cpu_s"][k] * 1000 / requests, 3)
            for k in ("api", "postgres", "relay", "consumer", "redis", "loadgen", "other")
        }
        result["db"] = self.pgss_top()
        result["db"]["exec_ms_per_request"] = round(result["db"]["exec_ms_total"] / requests, 3)
        result["conflicts_retried"] = api.count_in_log(CONFLICT_LOG, log_offset)
        result["outbox_unsent_after"] = self.outbox_unsent()
        result["worker_rss_kib_after"] = self.worker_rss()
        if extra:
            result.update(extra)
        capacity = result["cpu_s"]["machine_capacity"] or 1
        if result["cpu_s"]["other"] / capacity > 0.10:
            note = (
                f"{name}: {result['cpu_s']['other']:.1f} CPU-s of the machine went to "
                "processes outside the benchmark (another workload?); numbers are pessimistic"
            )
            self.results["notes"].append(note)
            self.log("WARNING " + note)
        self.results["scenarios"][name] = result
        lat = result["latency_ms"]
        self.log(
            f"{name}: {result['rps']} req/s, p50 {_ms(lat['p50'])} ms, p99 {_ms(lat['p99'])} ms,"
            f" non-2xx {result.get('non_2xx')}, conflicts retried {result['conflicts_retried']}"
        )
        return result

    # -- seeding -----------------------------------------------------------------

    def add_batches(self, batches: list[dict[str, Any]]) -> None:
        def worker(chunk: list[dict[str, Any]]) -> None:
            client = Client(self.port)
            try:
                for batch in chunk:
                    status, body, _t = client.request("POST", "/add_batch", batch)
                    if status != 201:
                        raise RuntimeError(f"add_batch {batch} -> {status} {body}")
            finally:
                client.close()

        chunks = [batches[i::8] for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(worker, c) for c in chunks if c]:
                future.result()

    def seed(self) -> None:
        config = self.config
        batches = []
        for prefix in ("alloc", "read", "long"):
            for i in range(config.skus):
                sku = f"{prefix}-sku-{i:03d}"
                batches.append({"ref": f"{sku}-b1", "sku": sku, "qty": MAX_QTY, "eta": None})
        batches.append(
            {"ref": "hotbase-sku-000-b1", "sku": "hotbase-sku-000", "qty": MAX_QTY, "eta": None}
        )
        for level in config.growth_levels:
            sku = f"growth-{level}-sku-000"
            batches.append({"ref": f"{sku}-b1", "sku": sku, "qty": MAX_QTY, "eta": None})
        started = time.monotonic()
        self.add_batches(batches)
        self.log(
            f"seeded {len(batches)} batches through POST /add_batch "
            f"in {time.monotonic() - started:.1f}s"
        )
        if "read" in config.scenarios:
            self.log(
                f"seeding {config.read_orders} orders for the read scenario through "
                "POST /allocate (wrk, doubles as warm-up)"
            )
            result = self.run_wrk(
                "allocate.lua",
                [
                    str(config.wrk_threads),
                    "read-",
                    "read-sku-",
                    str(config.skus),
                    str(config.read_orders),
                ],
                count=config.read_orders,
                label="seed-read",
            )
            found = self.sql(
                "SELECT count(DISTINCT orderid) FROM allocations_view WHERE orderid LIKE 'read-%%'"
            )[0][0]
            result["orders_in_view"] = int(found)
            self.results["seed_read"] = result
            self.log(
                f"seeded read orders: {result['rps']} req/s, {found} in the view, "
                f"statuses {result['statuses']}"
            )
            if found != config.read_orders:
                self.results["notes"].append(
                    f"only {found} of {config.read_orders} read orders were allocated"
                )
        else:
            self.log("warming up (3 s of allocations)")
            self.run_wrk(
                "allocate.lua",
                [str(config.wrk_threads), "warm-", "long-sku-", str(config.skus), "0"],
                duration=3,
                label="warmup",
            )
        self.sql("ANALYZE")

    # -- scenarios -----------------------------------------------------------------

    def scenario_allocate(self) -> None:
        c = self.config
        self.measured(
            "allocate",
            f"POST /allocate, unique orders over {c.skus} SKUs, {c.connections} connections",
            lambda: self.run_wrk(
                "allocate.lua",
                [str(c.wrk_threads), "alloc-", "alloc-sku-", str(c.skus), "0"],
                duration=c.duration,
                label="allocate",
            ),
        )
        self.measured(
            "baseline-allocate",
            f"pgbench: the minimal SQL of one allocation, same {c.skus} SKUs, "
            f"{c.connections} clients",
            lambda: self.run_pgbench(
                "allocate.sql",
                {"prefix": "alloc-sku-", "lo": "0", "hi": str(c.skus - 1)},
                c.duration,
                "allocate",
            ),
        )

    def scenario_hot(self) -> None:
        c = self.config
        # Enough stock for part of the run: 20% of what `allocate` did in as much time
        # (contention makes `hot` 2-3x slower), so it sells out and later orders get 409.
        allocate_rps = (self.results["scenarios"].get("allocate") or {}).get("rps") or 200
        stock = max(300, int(allocate_rps * c.duration * 0.2))
        per_batch = max(1, stock // c.hot_batches)
        batches = []
        for i in range(c.hot_batches):
            eta = None if i == 0 else f"2031-0{i}-01"
            batches.append(
                {"ref": f"hot-sku-000-b{i + 1}", "sku": "hot-sku-000", "qty": per_batch, "eta": eta}
            )
        stock = per_batch * c.hot_batches
        self.add_batches(batches[:1])
        self.add_batches(batches[1:])

        result = self.measured(
            "hot",
            f"POST /allocate, every order on one SKU ({stock} units in {c.hot_batches} "
            f"batches), {c.connections} connections",
            lambda: self.run_wrk(
                "allocate.lua",
                [str(c.wrk_threads), "hot-", "hot-sku-", "1", "0"],
                duration=c.duration,
                label="hot",
            ),
        )
        rows = self.sql(
            f"""SELECT b.reference, b.purchased_quantity, coalesce(sum(a.qty), 0), count(a.id),
                       {"b.allocated_quantity" if self.batch_counter else "NULL"}
                 FROM batches b LEFT JOIN allocations a ON a.batch_id = b.id
                WHERE b.sku = 'hot-sku-000' GROUP BY b.id ORDER BY b.id"""
        )
        allocated = sum(int(r[2]) for r in rows)
        oversold = [r[0] for r in rows if int(r[2]) > int(r[1])]
        result["stock"] = stock
        result["allocated_units"] = allocated
        result["accepted"] = int(result["statuses"].get("202", 0))
        result["oversold_batches"] = oversold
        result["batches"] = [
            {
                "ref": r[0],
                "purchased": int(r[1]),
                "allocated": int(r[2]),
                "allocated_quantity_column": r[4],
            }
            for r in rows
        ]
        # Every 202 is one unit in a batch; once an order got "Out of stock"
        # the SKU should be exactly sold out (qty 1 per order).
        result["sold_out_exactly"] = (allocated == stock) if result["out_of_stock"] else None
        result["accepted_matches_allocations"] = result["accepted"] == allocated
        self.log(
            f"hot: {allocated}/{stock} units allocated, {result['accepted']} accepted, "
            f"{result['out_of_stock']} out of stock, oversold batches: {oversold or 'none'}"
        )

        self.measured(
            "baseline-hot",
            f"pgbench: the minimal SQL of one allocation, one SKU, {c.connections} clients",
            lambda: self.run_pgbench(
                "allocate.sql", {"prefix": "hotbase-sku-", "lo": "0", "hi": "0"}, c.duration, "hot"
            ),
        )

    def scenario_read(self) -> None:
        c = self.config
        n = c.read_orders
        self.measured(
            "read",
            f"GET /allocations/<orderid> over {n} allocated orders, {c.connections} connections",
            lambda: self.run_wrk("read.lua", ["read-", str(n)], duration=c.duration, label="read"),
        )
        self.measured(
            "baseline-read",
            f"pgbench: the view's SELECT by orderid, {c.connections} clients",
            lambda: self.run_pgbench(
                "read.sql", {"prefix": "read-", "n": str(n)}, c.duration, "read"
            ),
        )

    def seed_growth(self, level: int) -> float:
        """Gives growth-<level>-sku-000 `level` allocations with direct SQL, as the
        service would have written them (allocation, view row, sent outbox message,
        product version)."""
        sku = f"growth-{level}-sku-000"
        ref = f"{sku}-b1"
        prefix = f"gseed-{level}-"
        started = time.monotonic()
        conn = self.db()
        conn.autocommit = False
        try:
            with conn.cursor() as cur:
                cur.execute(
                    """INSERT INTO allocations (batch_id, orderid, sku, qty)
                       SELECT b.id, %(prefix)s || g, b.sku, 1
                         FROM batches b, generate_series(1, %(n)s) g WHERE b.reference = %(ref)s""",
                    {"prefix": prefix, "n": level, "ref": ref},
                )
                cur.execute(
                    """INSERT INTO allocations_view (orderid, sku, batchref)
                       SELECT %(prefix)s || g, %(sku)s, %(ref)s FROM generate_series(1, %(n)s) g""",
                    {"prefix": prefix, "n": level, "ref": ref, "sku": sku},
                )
                cur.execute(
                    """INSERT INTO outbox (message_id, channel, sku, payload, occurred_at, sent_at)
                       SELECT m.id, 'line_allocated', %(sku)s,
                              json_build_object('orderid', %(prefix)s || m.g, 'sku', %(sku)s::text,
                                                'qty', 1, 'batchref', %(ref)s::text,
                                                'message_id', m.id, 'occurred_at', now())::text,
                              now(), now()
                         FROM (SELECT gen_random_uuid()::text AS id, g
                                 FROM generate_series(1, %(n)s) g) m""",
                    {"prefix": prefix, "n": level, "ref": ref, "sku": sku},
                )
                cur.execute(
                    "UPDATE products SET version_number = version_number + %(n)s "
                    "WHERE sku = %(sku)s",
                    {"n": level, "sku": sku},
                )
                if self.batch_counter:
                    cur.execute(
                        "UPDATE batches SET allocated_quantity = allocated_quantity + %(n)s "
                        "WHERE reference = %(ref)s",
                        {"n": level, "ref": ref},
                    )
            conn.commit()
        finally:
            conn.autocommit = True
        return time.monotonic() - started

    def scenario_growth(self) -> None:
        c = self.config
        self.log("growth: seeding allocations with SQL")
        seed_seconds = {
            level: round(self.seed_growth(level), 2) for level in c.growth_levels if level
        }
        self.sql("ANALYZE")
        self.wait_outbox_drained()
        for level in c.growth_levels:
            name = f"growth-{level}"
            sku = f"growth-{level}-sku-000"
            existing = int(
                self.sql("SELECT count(*) FROM allocations WHERE sku = %s", (sku,))[0][0]
            )

            def run(level: int = level, sku: str = sku) -> dict[str, Any]:
                client = Client(self.port)
                samples: list[float] = []
                statuses: Counter[int] = Counter()
                try:
                    for i in range(2):  # warm the connection and this worker's caches
                        client.request(
                            "POST",
                            "/allocate",
                            {"orderid": f"gwarm-{level}-{i}", "sku": sku, "qty": 1},
                        )
                    started = time.monotonic()
                    i = 0
                    while i < c.growth_samples and (
                        i < c.growth_min_samples or time.monotonic() - started < c.growth_seconds
                    ):
                        status, _body, elapsed = client.request(
                            "POST", "/allocate", {"orderid": f"g-{level}-{i}", "sku": sku, "qty": 1}
                        )
                        statuses[status] += 1
                        samples.append(elapsed * 1000)
                        i += 1
                    seconds = time.monotonic() - started
                finally:
                    client.close()
                non_2xx = sum(n for s, n in statuses.items() if not 200 <= s < 300)
                return {
                    "tool": "http.client (sequential)",
                    "connections": 1,
                    "seconds": round(seconds, 2),
                    "requests": len(samples),
                    "rps": round(len(samples) / seconds, 1) if seconds else None,
                    "latency_ms": {
                        "p50": statistics.median(samples),
                        "p90": pct(samples, 90),
                        "p99": pct(samples, 99),
                        "p99.9": None,
                        "mean": statistics.fmean(samples),
                        "max": max(samples),
                        "min": min(samples),
                    },
                    "statuses": {str(k): v for k, v in sorted(statuses.items())},
                    "non_2xx": non_2xx,
                    "out_of_stock": 0,
                    "errors": non_2xx,
                }

            self.measured(
                name,
                f"one allocation at a time on a SKU with {existing} allocations",
                run,
                extra={
                    "existing_allocations": existing,
                    "seed_seconds": seed_seconds.get(level, 0.0),
                },
            )

    def scenario_long(self) -> None:
        c = self.config
        n = c.long_run
        if n <= 0:
            return
        self.wait_outbox_drained()
        before = self.worker_rss()
        self.results["memory"]["before_long_run_kib"] = before
        self.measured(
            "long",
            f"{n} POST /allocate over {c.skus} SKUs, {c.connections} connections "
            "(worker memory before/after)",
            lambda: self.run_wrk(
                "allocate.lua",
                [str(c.wrk_threads), "long-", "long-sku-", str(c.skus), str(n)],
                count=n,
                label="long",
            ),
        )
        time.sleep(1)
        after = self.worker_rss()
        self.results["memory"]["after_long_run_kib"] = after
        self.results["memory"]["long_run_requests"] = n

    def profile(self) -> None:
        """py-spy over both workers during an extra, unmeasured allocate run."""
        c = self.config
        pyspy = (
            os.environ.get("PY_SPY")
            or shutil.which("py-spy")
            or (
                str(Path(sys.executable).with_name("py-spy"))
                if Path(sys.executable).with_name("py-spy").exists()
                else None
            )
        )
        if pyspy is None:
            self.results["notes"].append(
                "--profile: py-spy not found (pip install py-spy, or set PY_SPY=/path/to/py-spy)"
            )
            self.log("py-spy not found; skipping the profile")
            return
        api = self.services["api"]
        self.results["profile"] = {}
        # "cpu": only the thread holding the GIL is sampled, i.e. where the workers
        # burn CPU. "wall": every thread that is not idle, i.e. where a request
        # spends its time, waiting on PostgreSQL and for the GIL included.
        for mode, flags in (("cpu", ["--gil"]), ("wall", [])):
            raw = self.logs / f"profile-{mode}.txt"
            self.wait_outbox_drained()
            self.log(
                f"profile ({mode}): py-spy on the API workers during "
                f"{c.profile_seconds} s of allocations"
            )
            spy = subprocess.Popen(
                [
                    pyspy,
                    "record",
                    "--pid",
                    str(api.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--format",
                    "raw",
                    "--rate",
                    "100",
                    "--duration",
                    str(c.profile_seconds),
                    *flags,
                    "-o",
                    str(raw),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_pdeathsig(),
            )
            time.sleep(1)
            load = self.run_wrk(
                "allocate.lua",
                [str(c.wrk_threads), f"prof-{mode}-", "long-sku-", str(c.skus), "0"],
                duration=c.profile_seconds + 1,
                label=f"profile-{mode}",
            )
            out, _ = spy.communicate(timeout=60)
            (self.logs / f"py-spy-{mode}.txt").write_text(out.decode(errors="replace"))
            if not raw.exists():
                self.results["notes"].append(
                    f"py-spy ({mode}) wrote no profile: " + out.decode(errors="replace")[-300:]
                )
                continue
            summary = summarise_profile(raw)
            summary["rps_while_profiling"] = load["rps"]
            summary["collapsed_stacks"] = str(raw.relative_to(ROOT))
            self.results["profile"][mode] = summary

    # -- checks and the run ----------------------------------------------------------------

    def final_checks(self) -> None:
        drained = self.wait_outbox_drained(120)
        oversold = self.sql(
            """SELECT b.reference, b.purchased_quantity, sum(a.qty)
                 FROM batches b JOIN allocations a ON a.batch_id = b.id
                GROUP BY b.id HAVING sum(a.qty) > b.purchased_quantity"""
        )
        drift = []
        if self.batch_counter:
            drift = self.sql(
                """SELECT b.reference, b.allocated_quantity, coalesce(sum(a.qty), 0)
                     FROM batches b LEFT JOIN allocations a ON a.batch_id = b.id
                    GROUP BY b.id HAVING b.allocated_quantity <> coalesce(sum(a.qty), 0)"""
            )
        allocations = int(self.sql("SELECT count(*) FROM allocations")[0][0])
        view = int(self.sql("SELECT count(*) FROM allocations_view")[0][0])
        messages = int(
            self.sql("SELECT count(*) FROM outbox WHERE channel = 'line_allocated'")[0][0]
        )
        stream_len = None
        try:
            import redis

            assert self.redis is not None
            stream_len = int(redis.Redis.from_url(self.redis.url).xlen("line_allocated"))
        except Exception as error:  # informative only
            self.results["notes"].append(f"could not read the Redis stream length: {error}")
        restarted = sorted(self.worker_pids_seen - set(self.worker_pids()))
        self.results["checks"] = {
            "oversold_batches": [r[0] for r in oversold],
            # pgbench's baseline keeps the counter too, so any drift is the service's.
            "batches_whose_allocated_quantity_disagrees": (
                [{"ref": r[0], "counter": int(r[1]), "sum": int(r[2])} for r in drift]
                if self.batch_counter
                else None
            ),
            "allocations": allocations,
            "allocations_view_rows": view,
            "line_allocated_outbox_rows": messages,
            "every_allocation_has_view_row_and_message": allocations == view == messages,
            "outbox_drained_after_s": None if drained is None else round(drained, 1),
            "line_allocated_stream_length": stream_len,
            "workers_replaced_during_run": restarted,
            "services_alive_at_end": {n: s.alive() for n, s in self.services.items()},
        }

    def run(self) -> dict[str, Any]:
        c = self.config
        wall_started = time.monotonic()
        self.results["started_at"] = self.started_at.isoformat()
        self.results["machine"] = machine_info()
        self.results["versions"] = {
            "wrk": _tool_version([self.wrk or "wrk", "--version"]),
            "pgbench": _tool_version([self.pgbench or "pgbench", "--version"]),
            "redis": _tool_version(["redis-server", "--version"]),
            "service_commit": _git(c.src, "rev-parse", "--short", "HEAD"),
            "service_uncommitted_files": len(
                [
                    line
                    for line in _git(c.src, "status", "--porcelain").splitlines()
                    if not line[3:].startswith("bench/")
                ]
            ),
            "service_src": c.src or str(ROOT / "src"),
        }
        self.results["config"] = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in c.__dict__.items()
        }
        self.start()
        self.results["versions"]["postgres"] = self.sql("SHOW server_version")[0][0]
        self.results["memory"]["idle_kib"] = self.worker_rss()
        self.results["setup_seconds"] = round(time.monotonic() - wall_started, 1)
        self.seed()
        self.results["memory"]["after_seed_kib"] = self.worker_rss()
        for name in c.scenarios:
            getattr(self, f"scenario_{name}")()
        if c.profile:
            self.profile()
        self.results["memory"]["end_kib"] = self.worker_rss()
        self.final_checks()
        self.results["wall_seconds"] = round(time.monotonic() - wall_started, 1)
        return self.results


# ---------------------------------------------------------------------------
# py-spy summary


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    match = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not match:
        return frame
    func, path = match.groups()
    return f"{func} ({_short_path(path)})"


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 1)[-1]


# Where a sample belongs, judged from the innermost matching frame first.
IDLE_LEAF = re.compile(
    r"^(_worker \(concurrent/futures/thread\.py|\w*Selector\.select |Arbiter\.sleep |"
    r"Condition\.wait |Event\.wait )"
)
PROFILE_BUCKETS = [
    ("pool pre-ping (a SELECT 1 round trip per connection checkout)", re.compile(r"do_ping")),
    (
        "PostgreSQL round trips (psycopg2 execute/commit/connect)",
        re.compile(r"\((psycopg2/|sqlalchemy/engine/default\.py)|do_execute|do_commit|do_rollback"),
    ),
    ("Redis client", re.compile(r"\(redis/")),
    ("logging (access log, INFO lines)", re.compile(r"\(logging/|glogging\.py")),
    ("JSON", re.compile(r"\(json/")),
    ("pydantic validation", re.compile(r"\(pydantic")),
    ("tenacity retry machinery", re.compile(r"\(tenacity/")),
    ("SQLAlchemy ORM (loading, flush, unit of work)", re.compile(r"\(sqlalchemy/orm/")),
    ("SQLAlchemy Core (compile, execute, pool, results)", re.compile(r"\(sqlalchemy/")),
    ("allocation service code", re.compile(r"\(allocation/")),
    ("Flask/Werkzeug", re.compile(r"\((flask|werkzeug)/")),
    ("gunicorn (HTTP parsing, socket I/O)", re.compile(r"\(gunicorn/")),
]


def summarise_profile(path: Path, top: int = 15) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        for name in {_frame_name(f) for f in frames}:
            inclusive[name] += count
        leaf[_frame_name(frames[-1])] += count
        bucket = "other"
        if IDLE_LEAF.search(frames[-1]):
            buckets["idle threads (waiting for work)"] += count
            continue
        for frame in reversed(frames):
            hit = next((label for label, pattern in PROFILE_BUCKETS if pattern.search(frame)), None)
            if hit:
                bucket = hit
                break
        buckets[bucket] += count
    share = lambda n: round(100 * n / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "buckets_pct": {k: share(v) for k, v in buckets.most_common()},
        "inclusive_pct": [{"frame": k, "pct": share(v)} for k, v in inclusive.most_common(top * 2)],
        "self_pct": [{"frame": k, "pct": share(v)} for k, v in leaf.most_common(top)],
    }


# ---------------------------------------------------------------------------
# output


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


BASELINE_OF = {"allocate": "baseline-allocate", "hot": "baseline-hot", "read": "baseline-read"}


def render(results: dict[str, Any]) -> str:
    scenarios = results["scenarios"]
    lines = []
    header = "| scenario | req/s | p50 ms | p90 ms | p99 ms | non-2xx | vs SQL baseline | notes |"
    lines += [header, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, s in scenarios.items():
        lat = s["latency_ms"]
        ratio = ""
        baseline = scenarios.get(BASELINE_OF.get(name, ""))
        if baseline and baseline.get("rps") and s.get("rps"):
            ratio = f"{s['rps'] / baseline['rps']:.3f}x"
            s["ratio_to_baseline"] = round(s["rps"] / baseline["rps"], 4)
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
        cpu = s.get("cpu_ms_per_request") or {}
        if cpu and s["tool"] != "pgbench":
            notes.append(f"CPU ms/req: api {cpu['api']:.2f}, pg {cpu['postgres']:.2f}")
        lines.append(
            f"| {name} | {_num(s.get('rps'))} | {_ms(lat.get('p50'))} | {_ms(lat.get('p90'))} "
            f"| {_ms(lat.get('p99'))} | {s.get('non_2xx', 0)} | {ratio or '-'} "
            f"| {'; '.join(notes)} |"
        )

    out = ["", "\n".join(lines), ""]
    m = results["machine"]
    versions = results["versions"]
    out.append(
        f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB; "
        + (
            f"service {versions['service_commit']} "
            f"(+{versions['service_uncommitted_files']} uncommitted files); "
            if versions.get("service_commit")
            else f"service from {versions.get('service_src')}; "
        )
        + f"{results['config']['workers']} workers x {results['config']['threads']} threads; "
        f"run took {results.get('wall_seconds')} s"
    )
    mem = results["memory"]
    if "before_long_run_kib" in mem:
        before = sum(v or 0 for v in mem["before_long_run_kib"].values()) / 1024
        after = sum(v or 0 for v in mem["after_long_run_kib"].values()) / 1024
        per_worker = ", ".join(
            f"{(mem['before_long_run_kib'].get(pid) or 0) / 1024:.1f} -> {(v or 0) / 1024:.1f}"
            for pid, v in mem["after_long_run_kib"].items()
        )
        out.append(
            f"worker RSS: idle {sum(v or 0 for v in mem['idle_kib'].values()) / 1024:.1f} MiB; "
            f"before the long run ({mem['long_run_requests']:,} requests) {before:.1f} MiB, "
            f"after {after:.1f} MiB (per worker: {per_worker})"
        )
    checks = results.get("checks") or {}
    if checks:
        drift = checks.get("batches_whose_allocated_quantity_disagrees")
        out.append(
            f"checks: oversold batches {len(checks['oversold_batches'])}; "
            + (
                ""
                if drift is None
                else f"batches whose allocated_quantity != sum of lines {len(drift)}; "
            )
            + f"allocations "
            f"{checks['allocations']:,} = view rows {checks['allocations_view_rows']:,} = "
            f"line_allocated messages {checks['line_allocated_outbox_rows']:,}: "
            f"{checks['every_allocation_has_view_row_and_message']}; outbox drained "
            f"{checks['outbox_drained_after_s']} s after the last scenario; "
            f"workers replaced: {len(checks['workers_replaced_during_run'])}"
        )
    for mode, p in (results.get("profile") or {}).items():
        top = ", ".join(f"{k} {v}%" for k, v in list(p["buckets_pct"].items())[:7])
        out.append(f"py-spy {mode} ({p['samples']} samples): {top}")
    for note in results.get("notes", []):
        out.append(f"note: {note}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    bench = Bench(config)
    atexit.register(bench.stop)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = bench.run()
    finally:
        bench.stop()
        atexit.unregister(bench.stop)
        signal.signal(signal.SIGTERM, previous)
    table = render(results)
    results["table"] = table
    text = json.dumps(results, indent=2, default=str)
    (RESULTS / f"{bench.stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(table)
    json_path = (RESULTS / f"{bench.stamp}.json").relative_to(ROOT)
    print(
        f"\nJSON: {json_path} (and bench/results/latest.json); "
        f"logs: {bench.logs.relative_to(ROOT)}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
