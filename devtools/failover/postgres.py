"""A throwaway pg_auto_failover formation: a monitor and two PostgreSQL 15 data nodes.

Everything binds to 127.0.0.1 on free ports; as root, pg_autoctl and PostgreSQL
run as the ``postgres`` user. Queries go through psycopg2 (the service's driver):
a subprocess per probe would blur the moment a promotion is seen.

Timings that matter, and why they are set as they are:
- the monitor's health checks run every second and give a node up after one
  (defaults: about 50 s of outage after a crash); written to the monitor's
  ``postgresql.auto.conf`` before its first start, so no window runs slow;
- ``checkpoint_completion_target = 0``: pg_autoctl's base backup of a new standby
  waits for a checkpoint, spread over minutes on an idle primary otherwise;
- ``wal_retrieve_retry_interval = 500ms``: a standby reconnects that soon to a
  primary restarted in place, whose commits wait for it meanwhile.

Faults: ``kill_postmaster`` kills PostgreSQL alone, and its keeper restarts it;
whether the monitor also fails over is a race (``wait_settled``, never assume
which node ends primary). ``kill_node`` crashes the node: keeper and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from devtools.failover.processes import Topology, crash, descendants, process_table, terminate_all
from devtools.servers import (
    PG_BIN_DIRS,
    STOP_TIMEOUT,
    ServerError,
    find_binary,
    free_port,
    start_process,
    tail_of,
)
from devtools.waiting import wait_until

LOOPBACK = "127.0.0.1"

# Monitor settings (ms): a dead primary is replaced in about 2 s, not about 50 s.
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "1000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "200",
    "pgautofailover.node_considered_unhealthy_timeout": "1000",
    "pgautofailover.primary_demote_timeout": "1000",
    "pgautofailover.startup_grace_period": "1000",
}
# Every instance. pg_autoctl sizes shared_buffers from the machine's memory in a
# file of its own; postgresql.auto.conf wins over it. full_page_writes stays on:
# pg_rewind needs it when an old primary rejoins.
INSTANCE_SETTINGS = {
    "shared_buffers": "32MB",
    "maintenance_work_mem": "64MB",
    "fsync": "off",
    "checkpoint_completion_target": "0",
    "wal_retrieve_retry_interval": "500ms",
}
PROBE_TABLE = "ha_write_probe"  # in database "postgres", on the primary
PRIMARY_STATES = frozenset({"single", "wait_primary", "primary", "join_primary", "apply_settings"})

T = TypeVar("T")


@dataclass
class PgNode:
    """One instance pg_autoctl runs: the monitor or a data node."""

    name: str
    port: int
    pgdata: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def postmaster_pid(self) -> int | None:
        """The PID postmaster.pid names, if that process is alive and ours."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        ours = self.process is not None and pid in descendants([self.process.pid], process_table())
        return pid if ours else None


class PgAutoFailover(Topology):
    """A formation: a monitor and ``data_nodes`` PostgreSQL nodes, one database."""

    prefix = "allocation-pgaf-"

    def __init__(
        self, dbname: str = "allocation", data_nodes: int = 2, base_dir: str | None = None
    ) -> None:
        super().__init__(base_dir)
        self.dbname = dbname
        self.user = "postgres"
        self._data_nodes = data_nodes
        self._run_as = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        # The real directory, not a symlink to pg_ctl: pg_autoctl runs its siblings.
        self._bin = Path(find_binary("pg_ctl", PG_BIN_DIRS)).resolve().parent
        self._autoctl = find_binary("pg_autoctl", ("/usr/bin", str(self._bin)))
        self.monitor: PgNode | None = None
        self.nodes: dict[str, PgNode] = {}

    # -- addresses ------------------------------------------------------------

    @property
    def url(self) -> str:
        """SQLAlchemy's URL over every data node: connects to the one taking writes."""
        hosts = "&".join(f"host={LOOPBACK}:{node.port}" for node in self.nodes.values())
        options = f"{hosts}&target_session_attrs=read-write"
        return f"postgresql+psycopg2://{self.user}@/{self.dbname}?{options}"

    def libpq_uri(self) -> str:
        """What ``pg_autoctl show uri --formation default`` prints (libpq's form)."""
        monitor = self._monitor()
        args = ["show", "uri", "--formation", "default", "--pgdata", str(monitor.pgdata)]
        return self._run_autoctl(args).strip()

    # -- the monitor's view ---------------------------------------------------

    def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported state, goal state), as the monitor has them."""
        sql = "SELECT nodename, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid"
        return {name: (reported, goal) for name, reported, goal in self.monitor_query(sql)}

    def primary(self) -> str | None:
        """The node the monitor has as primary now (reported and goal), if any."""
        for name, (reported, goal) in self.states().items():
            if reported in PRIMARY_STATES and goal in PRIMARY_STATES:
                return name
        return None

    def accepts_writes(self, name: str, timeout: float = 2.0) -> bool:
        """Whether ``name`` commits a row within ``timeout`` seconds: neither a standby
        nor read-only, and its synchronous standby, if any, acknowledges, as the
        service's own commits need. (A commit that wrote nothing would not wait.)"""
        sql = f"INSERT INTO {PROBE_TABLE} DEFAULT VALUES"
        return _quietly(lambda: self.query(name, sql, "postgres", timeout)) is not None

    def writable_primary(self, exclude: str | None = None) -> str | None:
        """The monitor's primary, if it is not ``exclude`` and commits a row now."""
        name = _quietly(self.primary)
        return name if name and name != exclude and self.accepts_writes(name) else None

    # -- waiting --------------------------------------------------------------

    def wait_for_primary(self, exclude: str | None = None, timeout: float = 60.0) -> str:
        """Waits until a primary other than ``exclude`` takes writes; its name."""
        what = f"a writable primary other than {exclude}"
        return wait_until(
            what,
            lambda: self.writable_primary(exclude),
            timeout,
            detail=self.describe,
            error=ServerError,
        )

    def wait_for_secondary(self, name: str, timeout: float = 60.0) -> None:
        """Waits until the monitor has ``name`` as a secondary (reported and goal)."""
        self._wait_for_state(name, "secondary", timeout)

    def wait_settled(self, quiet: float = 2.5, timeout: float = 60.0) -> str:
        """Waits until one node is primary and the others secondary, unchanged for
        ``quiet`` seconds, and the primary takes writes; its name. After
        ``kill_postmaster`` the keeper restarts PostgreSQL in place within about
        0.2 s, and yet the monitor may fail over a second or two later."""
        last, since = _quietly(self.states), time.monotonic()

        def settled() -> str | None:
            nonlocal last, since
            states = _quietly(self.states)
            if states != last or not _converged(states):
                last, since = states, time.monotonic()
                return None
            return self.writable_primary() if time.monotonic() - since >= quiet else None

        what = f"a formation settled for {quiet:g}s"
        return wait_until(what, settled, timeout, detail=self.describe, error=ServerError)

    # -- faults ---------------------------------------------------------------

    def kill_postmaster(self, name: str) -> int:
        """kill -9 the node's postmaster alone (its keeper stays up and restarts
        it); the PID killed. Follow with ``wait_settled``."""
        pid = self.nodes[name].postmaster_pid()
        if pid is None:
            raise ServerError(f"{name}: no running postmaster of ours")
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill_node(self, name: str) -> None:
        """Crash the node: its pg_autoctl, keeper, PostgreSQL and every child of
        theirs, at once, as a machine dies."""
        node = self.nodes[name]
        if node.process is None:
            raise ServerError(f"{name} is not running")
        semaphore = self._log_semaphore(node)
        crash([node.process.pid], node.pgdata)
        node.process.wait(STOP_TIMEOUT)
        node.process = None
        if semaphore is not None:  # pg_autoctl's SysV semaphore outlives a kill -9
            ctypes.CDLL(None).semctl(semaphore, 0, 0)  # IPC_RMID

    def restart_node(self, name: str) -> None:
        """Runs the node's pg_autoctl again: it rejoins as a secondary (after
        pg_rewind); ``wait_for_secondary(name)`` waits for that."""
        node = self.nodes[name]
        if node.running:
            raise ServerError(f"{name} is still running")
        node.process = self._launch(node, ["run", "--pgdata", str(node.pgdata)])

    # -- SQL ------------------------------------------------------------------

    def query(
        self, name: str, sql: str, dbname: str | None = None, timeout: float = 5.0
    ) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (autocommit) on data node ``name``."""
        return self._query(self.nodes[name].port, dbname or self.dbname, sql, timeout)

    def monitor_query(self, sql: str, timeout: float = 5.0) -> list[tuple[Any, ...]]:
        return self._query(self._monitor().port, "pg_auto_failover", sql, timeout)

    def log_tail(self, name: str, lines: int = 25) -> str:
        return tail_of(self.directory / f"{name}.log", lines)

    def describe(self) -> str:
        """The monitor's states and each node's log tail: what a failure message needs."""
        logs = "\n".join(f"--- {name}.log\n{self.log_tail(name, 12)}" for name in self.nodes)
        return f"states: {_quietly(self.states)}\n{logs}"

    def _query(self, port: int, dbname: str, sql: str, timeout: float) -> list[tuple[Any, ...]]:
        psycopg2: Any = importlib.import_module("psycopg2")
        options = f"-c statement_timeout={int(timeout * 1000)}"
        connection = psycopg2.connect(
            host=LOOPBACK,
            port=port,
            user=self.user,
            dbname=dbname,
            connect_timeout=max(1, round(timeout)),
            options=options,
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(sql)
                rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        finally:
            connection.close()
        # statement_timeout cancels a COMMIT's wait for the synchronous standby and
        # reports success, with this warning: the commit was not acknowledged.
        if any("synchronous replication" in notice for notice in connection.notices):
            raise ServerError(f"port {port}: the synchronous standby did not confirm in time")
        return rows

    # -- start and stop -------------------------------------------------------

    def _start(self) -> None:
        base = self.directory
        directories = [base / sub for sub in ("sock", "xdg-config", "xdg-data", "xdg-run")]
        for path in directories:
            path.mkdir()
        self._chown(base, *directories)
        self.monitor = PgNode("monitor", free_port(), base / "monitor")
        first = PgNode("node1", free_port(), base / "node1")
        self.nodes[first.name] = first
        self._initdb_all([(self.monitor, MONITOR_SETTINGS), (first, {})])
        self._start_monitor(self.monitor)
        self._launch_data_node(first, "single")
        probe = f"CREATE TABLE {PROBE_TABLE} (at timestamptz DEFAULT now())"
        self.query(first.name, probe, "postgres")
        for index in range(2, self._data_nodes + 1):
            node = PgNode(f"node{index}", free_port(), base / f"node{index}")
            self.nodes[node.name] = node
            self._launch_data_node(node, "secondary")  # a base backup of the primary
        self.wait_settled(quiet=0, timeout=30)

    def _stop(self) -> None:
        nodes = [node for node in (*self.nodes.values(), self.monitor) if node is not None]
        # SIGTERM: pg_autoctl stops PostgreSQL ("fast") and exits.
        processes = [node.process for node in nodes if node.process is not None]
        terminate_all(processes, signal.SIGTERM, self.directory)
        for node in nodes:
            node.process = None
            _remove_stale_shared_memory(node.pgdata)

    def _start_monitor(self, monitor: PgNode) -> None:
        args = ["create", "monitor", *self._create_args(monitor), "--run"]
        monitor.process = self._launch(monitor, args)

        def ready() -> object:
            return _quietly(lambda: self.monitor_query("SELECT 1 FROM pgautofailover.formation"))

        detail = functools.partial(self.log_tail, "monitor")
        wait_until("the monitor", ready, 30, detail=detail, error=ServerError)

    def _launch_data_node(self, node: PgNode, expected: str) -> None:
        monitor = f"postgres://autoctl_node@{LOOPBACK}:{self._monitor().port}/pg_auto_failover"
        args = [*self._create_args(node), "--name", node.name, "--dbname", self.dbname]
        args += ["--monitor", f"{monitor}?sslmode=disable", "--run"]
        node.process = self._launch(node, ["create", "postgres", *args])
        self._wait_for_state(node.name, expected, 60)

    def _create_args(self, node: PgNode) -> list[str]:
        return [
            "--pgdata", str(node.pgdata), "--pgport", str(node.port),
            "--pgctl", str(self._bin / "pg_ctl"), "--hostname", LOOPBACK, "--listen", LOOPBACK,
            "--auth", "trust", "--no-ssl",
        ]  # fmt: skip

    def _initdb_all(self, nodes: Sequence[tuple[PgNode, Mapping[str, str]]]) -> None:
        """initdb, in parallel, with our settings in postgresql.auto.conf: pg_autoctl
        adopts an existing PGDATA, and standbys inherit the file."""
        runs = [(node, extra, self._spawn_initdb(node)) for node, extra in nodes]
        for node, extra, process in runs:
            output, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise ServerError(f"initdb {node.name} failed:\n{output.decode(errors='replace')}")
            socket_directory = {"unix_socket_directories": str(self.directory / "sock")}
            settings = {**socket_directory, **INSTANCE_SETTINGS, **extra}
            with open(node.pgdata / "postgresql.auto.conf", "a") as conf:
                conf.writelines(f"{key} = '{value}'\n" for key, value in settings.items())

    def _spawn_initdb(self, node: PgNode) -> subprocess.Popen[bytes]:
        args = [
            str(self._bin / "initdb"), "-D", str(node.pgdata), "-A", "trust", "-U", self.user,
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        ]  # fmt: skip
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **self._as_postgres(),
        )

    def _launch(self, node: PgNode, args: list[str]) -> subprocess.Popen[bytes]:
        # SIGQUIT should we die: pg_autoctl then stops PostgreSQL in "immediate" mode.
        log = self.directory / f"{node.name}.log"
        return start_process([self._autoctl, *args], log, signal.SIGQUIT, **self._as_postgres())

    def _run_autoctl(self, args: list[str]) -> str:
        command = [self._autoctl, *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=30, check=False, **self._as_postgres()
        )
        if result.returncode != 0:
            raise ServerError(f"pg_autoctl {' '.join(args)} failed: {result.stderr.strip()}")
        return str(result.stdout)

    def _environment(self) -> dict[str, str]:
        """pg_autoctl keeps its configuration, state and PID files under the XDG
        directories, and reaches its local instance through PGHOST's socket."""
        base = self.directory
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "XDG_"))}
        env.update(
            HOME=str(base),
            PATH=f"{self._bin}:{env.get('PATH', '/usr/bin:/bin')}",
            PG_CONFIG=str(self._bin / "pg_config"),
            PGHOST=str(base / "sock"),
            XDG_CONFIG_HOME=str(base / "xdg-config"),
            XDG_DATA_HOME=str(base / "xdg-data"),
            XDG_RUNTIME_DIR=str(base / "xdg-run"),
            TZ="UTC",
            LC_ALL="C",
        )
        return env

    def _as_postgres(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"env": self._environment(), "cwd": self.directory}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        return kwargs

    def _chown(self, *paths: Path) -> None:
        if self._run_as is not None:
            for path in paths:
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)

    def _monitor(self) -> PgNode:
        if self.monitor is None:
            raise ServerError("the monitor is not started")
        return self.monitor

    def _wait_for_state(self, name: str, state: str, timeout: float) -> None:
        def reached() -> bool:
            states = _quietly(self.states)
            return states is not None and states.get(name) == (state, state)

        wait_until(f"{name} as {state}", reached, timeout, detail=self.describe, error=ServerError)

    @staticmethod
    def _log_semaphore(node: PgNode) -> int | None:
        """pg_autoctl hands its SysV log semaphore's id to its children's environment."""
        if node.process is None:
            return None
        for pid in descendants([node.process.pid], process_table()):
            with contextlib.suppress(OSError):
                for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    if entry.startswith(b"PG_AUTOCTL_LOG_SEMAPHORE="):
                        return int(entry.split(b"=", 1)[1])
        return None


def _converged(states: Mapping[str, tuple[str, str]] | None) -> bool:
    """One primary and every other node secondary, goals reached."""
    if not states:
        return False
    secondaries = [("secondary", "secondary")] * (len(states) - 1)
    return sorted(states.values()) == sorted([("primary", "primary"), *secondaries])


def _quietly(call: Callable[[], T]) -> T | None:
    """``call()``, or None when the server it asks cannot answer now."""
    try:
        return call()
    except (ServerError, OSError, _driver_error()):
        return None


def _driver_error() -> type[Exception]:
    error: type[Exception] = importlib.import_module("psycopg2").Error
    return error


def _remove_stale_shared_memory(pgdata: Path) -> None:
    """A postmaster killed with -9 and not restarted leaves its SysV shared memory:
    removed if postmaster.pid names it, its key matches and nobody is attached."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        key, shmid = (int(x) for x in lines[6].split())
        segments = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except (OSError, ValueError, IndexError):
        return
    for row in segments:
        fields = row.split()
        if int(fields[0]) == key and int(fields[1]) == shmid and int(fields[6]) == 0:
            ctypes.CDLL(None).shmctl(shmid, 0, None)  # IPC_RMID
