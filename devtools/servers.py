"""Throwaway PostgreSQL and Redis servers for the tests and the benchmark (stdlib only).

Servers run natively (no Docker), bound to 127.0.0.1 on a free port, with all
their files in a fresh temporary directory that is removed on ``stop()``::

    with PostgresServer() as pg, RedisServer() as redis:
        db_url = pg.create_database("allocation_test")
        ...

PostgreSQL refuses to run as root, so when the test process is root,
``initdb``/``postgres`` run as the ``postgres`` system user; otherwise as the
current user.

Only processes started here are ever signalled, by PID.  Cleanup happens on
``stop()``, on leaving the ``with`` block, at interpreter exit (atexit) and,
on Linux, if the test process dies without running atexit (the server gets a
parent-death signal).  Note the parent-death signal fires when the *thread*
that started the server exits, so start servers from a long-lived thread
(pytest fixtures run in the main thread, which is fine).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

__all__ = [
    "PG_BIN_DIRS",
    "PostgresServer",
    "RedisServer",
    "ServerError",
    "clean_env",
    "find_binary",
    "free_port",
    "pdeathsig_preexec",
    "start_process",
    "stop_process",
    "tail_of",
]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin")


class ServerError(RuntimeError):
    """A test server failed to start or stop."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, extra_dirs: Sequence[str] = ()) -> str:
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = os.path.join(directory, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServerError(f"{name!r} not found on PATH or in {list(extra_dirs)}")


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without PG* variables (they would leak into
    initdb/postgres/psql), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def pdeathsig_preexec(sig: int) -> Callable[[], None] | None:
    """A preexec_fn asking Linux to send ``sig`` to the child when its parent
    dies, so servers never outlive a killed test run.  None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sig, 0, 0, 0)
        if os.getppid() != parent:  # parent already gone: do not linger
            os.kill(os.getpid(), sig)

    return preexec


def start_process(
    args: Sequence[str], log: Path, death_signal: int = signal.SIGTERM, **popen: Any
) -> subprocess.Popen[bytes]:
    """Start a long-running process with its output appended to ``log``: in a
    session of its own (its process group is its own; a terminal's Ctrl-C
    reaches only us), no stdin, and ``death_signal`` if we die first.
    ``popen``: more Popen arguments (env, cwd, user...)."""
    with open(log, "ab") as output:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pdeathsig_preexec(death_signal),
            **popen,
        )


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT
) -> int:
    """Stop a process we started, by its PID: ``sig``, at most ``timeout`` seconds
    to exit, then SIGKILL; reap it and return its exit code (negative: a signal)."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        return proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired as exc:  # pragma: no cover
        raise ServerError(f"pid {proc.pid} ({proc.args!r}) did not die") from exc


def session_processes(session: int) -> list[str]:
    """The live processes (zombies are dead) of a session: "pid state command"."""
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = stat_file.read_text()
            command = (stat_file.parent / "cmdline").read_bytes()
        except OSError:  # it exited meanwhile
            continue
        state, _parent, _group, sid = stat[stat.rfind(")") + 2 :].split()[:4]
        if int(sid) == session and state != "Z":
            name = command.replace(b"\0", b" ").decode(errors="replace")[:100]
            found.append(f"{stat_file.parent.name} {state} {name}")
    return found


def kill_session(session: int) -> None:
    """SIGKILL whatever is left of a session started by ``start_process``."""
    for process in session_processes(session):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(process.split()[0]), signal.SIGKILL)


def tail_of(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


class _Server:
    """Common process management: launch, readiness polling, stop, cleanup."""

    name = "server"
    log_name = "server.log"
    # Signals for a graceful stop and for the parent-death safety net.
    stop_signal: int = signal.SIGTERM
    death_signal: int = signal.SIGTERM

    def __init__(self, port: int | None = None, base_dir: str | None = None) -> None:
        self._fixed_port = port is not None
        self.port: int = port if port is not None else free_port()
        self._base_dir_parent = base_dir
        self._base: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._atexit_registered = False
        self.start_seconds: float | None = None  # duration of the last start()

    # -- public ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def directory(self) -> Path:
        """Temporary directory holding the server's files (and log)."""
        if self._base is None:
            raise ServerError(f"{self.name} has not been started")
        return self._base

    @property
    def log_path(self) -> Path:
        return self.directory / self.log_name

    def log_tail(self, lines: int = 30) -> str:
        return tail_of(self.log_path, lines)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server (if running) and delete its directory."""
        try:
            self._terminate(self.stop_signal)
        finally:
            self._remove_dir()

    # -- helpers for subclasses -----------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _make_dir(self, prefix: str) -> Path:
        if self._base is None:
            self._base = Path(tempfile.mkdtemp(prefix=prefix, dir=self._base_dir_parent))
            if not self._atexit_registered:
                atexit.register(self._atexit)
                self._atexit_registered = True
        return self._base

    def _remove_dir(self) -> None:
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
        if self._atexit_registered:
            atexit.unregister(self._atexit)
            self._atexit_registered = False

    def _atexit(self) -> None:
        try:
            self.stop()
        except Exception as exc:  # pragma: no cover - best effort at exit
            print(f"tests.servers: cleanup of {self.name} failed: {exc}", file=sys.stderr)

    def _launch(self, allow_new_port: bool) -> None:
        """Start the process and wait until it is ready.  If the port turned
        out to be taken (race with free_port) and we chose it ourselves,
        retry on a fresh port."""
        if self.running:
            return
        attempts = 3 if allow_new_port and not self._fixed_port else 1
        for attempt in range(attempts):
            try:
                self._launch_once()
                return
            except ServerError as exc:
                port_taken = "already in use" in str(exc).lower()
                if not port_taken or attempt == attempts - 1:
                    raise
                self.port = free_port()

    def _launch_once(self) -> None:
        self._proc = start_process(
            self._command(),
            self.log_path,
            self.death_signal,
            cwd=self.directory,
            **self._popen_kwargs(),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise ServerError(
                    f"{self.name} exited with code {code} during startup "
                    f"(port {self.port}); log tail:\n{self.log_tail()}"
                )
            if self._is_ready():
                return
            if time.monotonic() > deadline:
                self._terminate(signal.SIGKILL)
                raise ServerError(
                    f"{self.name} not ready on 127.0.0.1:{self.port} after "
                    f"{START_TIMEOUT:.0f}s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _terminate(self, sig: int) -> None:
        """Signal our process (by PID), wait, escalate to SIGKILL, reap it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, sig)


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster (initdb + postgres) on 127.0.0.1.

    ``stop_keep_data()`` + ``restart()`` stop and restart the server on the
    same port keeping its data (for fault-injection tests); ``stop()`` also
    deletes the data directory.
    """

    name = "postgres"
    log_name = "postgres.log"
    stop_signal = signal.SIGINT  # "fast" shutdown
    death_signal = signal.SIGQUIT  # "immediate" shutdown

    def __init__(
        self,
        port: int | None = None,
        base_dir: str | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """``settings``: extra ``postgres -c name=value`` options."""
        super().__init__(port, base_dir)
        self.user = "postgres"  # database superuser
        self._settings = dict(settings or {})
        self._run_as: pwd.struct_passwd | None = (
            pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        )
        self._initdb = find_binary("initdb", PG_BIN_DIRS)
        self._postgres = find_binary("postgres", PG_BIN_DIRS)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default ``postgres`` database."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{quote(name, safe='')}"

    def start(self) -> None:
        """initdb (first time only), start postgres, wait for connections."""
        if self.running:
            return
        fresh, started = self._base is None, time.monotonic()
        try:
            base = self._make_dir("allocation-pg-")
            if not (base / "data" / "PG_VERSION").exists():
                self._init_cluster(base)
            self._launch(allow_new_port=self.start_seconds is None)
            self.start_seconds = time.monotonic() - started
        except BaseException:
            if fresh:
                self.stop()
            raise

    def stop_keep_data(self, immediate: bool = False) -> None:
        """Stop the server but keep the data directory for ``restart()``.
        ``immediate=True`` simulates a crash (SIGQUIT: no checkpoint, crash
        recovery on the next start)."""
        self._terminate(signal.SIGQUIT if immediate else signal.SIGINT)

    def restart(self) -> None:
        """(Stop if running and) start again on the same port, same data."""
        if self._base is None:
            raise ServerError("postgres has no data directory; call start() first")
        self.stop_keep_data()
        self._launch(allow_new_port=False)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name``; return its SQLAlchemy URL."""
        self.execute(f"CREATE DATABASE {_quote_ident(name)}")
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one autocommit SQL statement (psycopg2 if importable, else psql)."""
        if importlib.util.find_spec("psycopg2") is not None:
            psycopg2 = importlib.import_module("psycopg2")
            conn = psycopg2.connect(
                host="127.0.0.1",
                port=self.port,
                user=self.user,
                dbname=dbname,
                connect_timeout=10,
            )
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(sql)
            finally:
                conn.close()
            return
        psql = find_binary("psql", ("/usr/bin", *PG_BIN_DIRS))
        result = subprocess.run(
            [
                psql,
                "-X",
                "-q",
                "-w",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                dbname,
                "-c",
                sql,
            ],
            env=clean_env(PGCONNECT_TIMEOUT="10"),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ServerError(f"psql failed ({sql!r}): {result.stderr.strip()}")

    # -- internals ------------------------------------------------------------

    def _popen_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"env": clean_env(TZ="UTC", LC_ALL="C")}
        if self._run_as is not None:
            kwargs.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        return kwargs

    def _init_cluster(self, base: Path) -> None:
        (base / "sock").mkdir(exist_ok=True)
        if self._run_as is not None:
            for path in (base, base / "sock"):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        result = subprocess.run(
            [
                self._initdb,
                "-D",
                str(base / "data"),
                "-A",
                "trust",
                "-U",
                self.user,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._popen_kwargs(),
        )
        if result.returncode != 0:
            raise ServerError(
                f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def _command(self) -> list[str]:
        base = self.directory
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(base / "sock"),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            **self._settings,
        }
        cmd = [self._postgres, "-D", str(base / "data"), "-p", str(self.port)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _is_ready(self) -> bool:
        """Speak just enough of the wire protocol: a StartupMessage answered
        by an Authentication ('R') message means the server accepts
        connections; an ErrorResponse ('E', e.g. "the database system is
        starting up") or a refused connection means not yet."""
        params = f"user\0{self.user}\0database\0postgres\0\0".encode()
        packet = struct.pack("!ii", 8 + len(params), 196608) + params
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(packet)
                kind = sock.recv(1)
                if kind == b"R":
                    sock.sendall(b"X\0\0\0\4")  # Terminate
                    return True
                return False
        except OSError:
            return False


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class RedisServer(_Server):
    """A throwaway, non-persistent redis-server on 127.0.0.1."""

    name = "redis"
    log_name = "redis.log"
    stop_signal = signal.SIGTERM
    death_signal = signal.SIGTERM

    def __init__(self, port: int | None = None, base_dir: str | None = None) -> None:
        super().__init__(port, base_dir)
        # Keep the symlink path: Debian's redis-server is a symlink to a
        # multi-call binary that dispatches on argv[0].
        self._redis = find_binary("redis-server", ("/usr/bin", "/usr/local/bin"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.running:
            return
        fresh, started = self._base is None, time.monotonic()
        try:
            self._make_dir("allocation-redis-")
            self._launch(allow_new_port=self.start_seconds is None)
            self.start_seconds = time.monotonic() - started
        except BaseException:
            if fresh:
                self.stop()
            raise

    def stop_keep_data(self) -> None:
        """Stop the server, keep the directory (Redis data is not persisted)."""
        self._terminate(self.stop_signal)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port (data is lost)."""
        self.stop_keep_data()
        self._make_dir("allocation-redis-")
        self._launch(allow_new_port=False)

    def _command(self) -> list[str]:
        return [
            self._redis,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            "",
        ]

    def _is_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
