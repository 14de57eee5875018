"""The long-running processes a run starts (services, app servers) and their logs.

Only processes started here are ever signalled: each by its PID, and a
server's leftover workers through the process group it was started in.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness.httpclient import Client
from bench.harness.procstat import children_of, group_members
from devtools.servers import start_process, stop_process


class Service:
    """One long-running process (in a session of its own) with its log file, and
    the port it serves HTTP on, if it does."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log: Path, port: int | None = None
    ) -> None:
        self.name, self.args, self.env, self.log, self.port = name, args, env, log, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, cwd: Path | None = None) -> None:
        """Starts it in a session of its own, SIGTERMed should the harness die."""
        self.proc = start_process(self.args, self.log, signal.SIGTERM, env=self.env, cwd=cwd)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        code = stop_process(self.proc, signal.SIGTERM, timeout)
        self._kill_leftovers()
        return code

    def _kill_leftovers(self) -> None:
        """Workers that outlived their server (same process group, which is ours)."""
        deadline = time.monotonic() + 5
        while group_members(self.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_members(self.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

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


def workers_of(service: Service | None) -> list[int]:
    """The worker processes of a server (its direct children, but for the helper
    process multiprocessing starts beside spawned workers), [] if it is not running."""
    if service is None or not service.alive():
        return []
    return [pid for pid in children_of(service.pid) if not _is_resource_tracker(pid)]


def _is_resource_tracker(pid: int) -> bool:
    try:
        return b"multiprocessing.resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone already
        return False


class NotServing(RuntimeError):
    """A server exited or did not answer in time; the message has its log's tail."""


def wait_http(
    port: int,
    path: str,
    watched: list[Service],
    timeout: float = 60,
    ok: Callable[[int], bool] = lambda status: status == 200,
) -> None:
    """Waits until GET `path` answers a status that `ok` accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in watched:
            if not service.alive():
                raise NotServing(f"{service.name} exited during startup:\n{service.tail()}")
        try:
            client = Client(port, timeout=5)
            status, _body, _t = client.request("GET", path)
            client.close()
            if ok(status):
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise NotServing(f"{watched[0].name} did not answer in {timeout:.0f} s:\n{watched[0].tail()}")


def wait_workers(service: Service, count: int, timeout: float = 30) -> list[int]:
    """Waits (at most `timeout`) until the server has `count` workers; returns them."""
    deadline = time.monotonic() + timeout
    workers = workers_of(service)
    while len(workers) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        workers = workers_of(service)
    return workers
