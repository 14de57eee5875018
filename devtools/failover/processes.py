"""Topologies of servers, and finding and crashing their processes, and only those.

pg_autoctl and PostgreSQL start children of their own, some in sessions of their
own (so a process group does not hold them), and a keeper restarts what dies.
So a process belongs to a topology if it descends from a process we started or
works in the topology's temporary directory, and a crash stops them all first
(SIGSTOP, until no new one appears), then kills them: nothing can restart
anything in between.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from devtools.servers import STOP_TIMEOUT, ServerError


@dataclass(frozen=True)
class Process:
    pid: int
    parent: int
    cwd: str
    command: str


def process_table() -> dict[int, Process]:
    """The live processes (zombies are dead), by PID."""
    table = {}
    for directory in Path("/proc").glob("[0-9]*"):
        try:
            stat = (directory / "stat").read_text()
            cwd = os.readlink(directory / "cwd").removesuffix(" (deleted)")
            command = (directory / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # it exited meanwhile, or it is not ours to read
            continue
        state, parent = stat[stat.rfind(")") + 2 :].split()[:2]
        if state != "Z":
            pid = int(directory.name)
            table[pid] = Process(pid, int(parent), cwd, command.decode(errors="replace").strip())
    return table


def descendants(roots: Iterable[int], table: Mapping[int, Process]) -> set[int]:
    """``roots`` (those alive) and every process below them."""
    found = {pid for pid in roots if pid in table}
    while True:
        more = {p.pid for p in table.values() if p.parent in found} - found
        if not more:
            return found
        found |= more


def working_in(directory: Path, table: Mapping[int, Process]) -> set[int]:
    """Processes whose working directory is ``directory`` or below it."""
    prefix = str(directory)
    return {p.pid for p in table.values() if p.cwd == prefix or p.cwd.startswith(prefix + "/")}


def processes_under(directory: Path | str) -> list[str]:
    """``pid command`` of every live process working in ``directory``: what a
    topology there left behind (its directory may be gone already)."""
    table = process_table()
    return [f"{pid} {table[pid].command}" for pid in sorted(working_in(Path(directory), table))]


def crash(roots: Iterable[int] = (), directory: Path | None = None) -> None:
    """SIGKILL the trees of ``roots`` and whatever works in ``directory``, all at
    once: each is stopped first, until no new one appears, so that no keeper
    restarts what was just killed."""
    roots, stopped = list(roots), set[int]()
    while True:
        table = process_table()
        targets = descendants(roots, table) | (working_in(directory, table) if directory else set())
        targets.discard(os.getpid())
        if targets <= stopped:
            break
        for pid in targets - stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= targets
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def terminate_all(processes: Sequence[subprocess.Popen[bytes]], sig: int, directory: Path) -> None:
    """Stop processes we started, all in parallel: ``sig``, a few seconds to exit,
    then a crash of whatever is left of them or works in ``directory``; reap."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    crash([p.pid for p in processes], directory)
    for process in processes:
        process.wait(STOP_TIMEOUT)


class Topology:
    """Several servers in one fresh temporary directory: started together, stopped
    together (on ``stop()``, on leaving the ``with`` block, at interpreter exit),
    and the directory removed."""

    prefix = "allocation-ha-"

    def __init__(self, base_dir: str | None = None) -> None:
        self._base_parent = base_dir
        self._base: Path | None = None
        self.start_seconds: float | None = None

    @property
    def directory(self) -> Path:
        if self._base is None:
            raise ServerError(f"{type(self).__name__} is not started")
        return self._base

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
        if self._base is not None:
            return
        began = time.monotonic()
        self._base = Path(tempfile.mkdtemp(prefix=self.prefix, dir=self._base_parent))
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop every process (gracefully, then SIGKILL), remove the directory."""
        if self._base is None:
            return
        try:
            self._stop()
        finally:
            crash(directory=self._base)  # anything still working in our directory
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None
            atexit.unregister(self.stop)

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError
