"""`allocation run`: the API, the relay and (with Redis) the consumer, supervised as one.

Each program runs as a child process in a process group of its own, so that a
signal sent to the group reaches the program's own workers (granian's) too.
The supervisor stops every child when

- any child exits by itself (the API finding its port taken, say): the supervisor
  then exits with that child's status (1 if it was 0, 128+N if signal N killed it);
- it receives SIGTERM, SIGINT or SIGHUP, or its parent process goes away (``make``
  killed, a terminal closed): it then exits 0.

Stopping is SIGTERM to every child's process group, then SIGKILL to the groups
still alive after a grace period: a program that ignores SIGTERM (granian does
while its workers start) cannot keep the supervisor, or a port, alive. On Linux
the supervisor is also a "child subreaper": a worker orphaned by its dead server
becomes the supervisor's child, which reaps it, so no zombie outlives it; and
every child gets SIGTERM should the supervisor itself be killed (SIGKILL).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

logger = logging.getLogger(__name__)

# Requests in flight get this long to finish once a stop has begun; then SIGKILL.
# With the time SIGKILL takes, a stop ends well within 5 seconds.
GRACE_SECONDS = 3.0
KILL_WAIT_SECONDS = 1.5
TICK_SECONDS = 0.1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# Children run the code this process runs: the same interpreter and package,
# whatever way it was installed (editable or not, with or without a console
# script on PATH). -P: the working directory cannot shadow a module.
_CLI = "from allocation.entrypoints.cli.commands import main; main(prog_name='allocation')"
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Program:
    """A child to run: its name in the log, and its command line."""

    name: str
    args: tuple[str, ...]


def allocation(*args: str) -> Program:
    """`allocation ARGS…`, named after its command."""
    return Program(args[0], (sys.executable, "-P", "-c", _CLI, *args))


def service_programs(host: str, port: int, with_consumer: bool) -> list[Program]:
    """What `allocation run` supervises."""
    programs = [
        allocation("api", "--host", host, "--port", str(port)),
        allocation("relay"),
        allocation("hold-expiry"),
    ]
    if with_consumer:
        programs.append(allocation("consumer"))
    return programs


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    reported: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal_group(self, sig: int) -> None:
        """``sig`` to the child's process group (its workers included), if any is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def exit_status(self) -> int | None:
        """The child's exit status once it has exited (logged the first time seen)."""
        status = self.process.poll()
        if status is not None and not self.reported:
            self.reported = True
            logger.info("%s (pid %d) exited with status %d", self.name, self.pid, status)
        return status

    def gone(self) -> bool:
        """Exited, and nothing left in its process group either."""
        return self.exit_status() is not None and not _group_alive(self.pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a group we may not signal exists
        return True
    return True


class _StopRequest:
    """The stop signal received, set by the signal handlers."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.signum = signum

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self)


def supervise(programs: Sequence[Program], grace: float = GRACE_SECONDS) -> int:
    """Runs ``programs`` until one exits or a stop is asked for, stops them all, and
    returns the exit status: 0 after a requested stop, else the failed child's."""
    parent = os.getppid()
    request = _StopRequest()
    request.install()
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    children: list[_Child] = []
    failed: _Child | None = None
    try:
        for program in programs:
            if request.signum is None:
                children.append(_start(program))
        failed = _watch(children, request, parent)
    finally:
        _stop_all(children, grace)
    return 0 if failed is None else _failure_status(failed.process.returncode)


def _start(program: Program) -> _Child:
    process = subprocess.Popen(
        program.args,
        stdin=subprocess.DEVNULL,
        process_group=0,
        preexec_fn=_die_with_parent(os.getpid()),
    )
    logger.info("started %s (pid %d)", program.name, process.pid)
    return _Child(program.name, process)


def _watch(children: Sequence[_Child], request: _StopRequest, parent: int) -> _Child | None:
    """Waits for a child to exit (returned) or for a stop to be asked for (None)."""
    while request.signum is None:
        for child in children:
            if child.exit_status() is not None:
                logger.error("%s exited: stopping the others", child.name)
                return child
        if os.getppid() != parent:
            logger.warning("parent process %d is gone: stopping", parent)
            return None
        _reap_orphans(children)
        time.sleep(TICK_SECONDS)
    logger.info("received %s: stopping", signal.Signals(request.signum).name)
    return None


def _stop_all(children: Sequence[_Child], grace: float) -> None:
    """SIGTERM to every child's group; SIGKILL to those left after ``grace`` seconds."""
    for child in children:
        child.signal_group(signal.SIGTERM)
    if _wait_gone(children, grace):
        return
    for child in children:
        if not child.gone():
            logger.warning("%s did not stop within %gs: killing it", child.name, grace)
            child.signal_group(signal.SIGKILL)
    if not _wait_gone(children, KILL_WAIT_SECONDS):  # pragma: no cover - SIGKILL failed
        left = [child.name for child in children if not child.gone()]
        logger.error("still running after SIGKILL: %s", ", ".join(left))


def _wait_gone(children: Sequence[_Child], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        gone = [child.gone() for child in children]  # every child polled (so reaped)
        if all(gone):
            return True
        _reap_orphans(children)
        if time.monotonic() >= deadline:
            return False
        time.sleep(TICK_SECONDS / 2)


def _reap_orphans(children: Sequence[_Child]) -> None:
    """Reaps the exited processes a subreaper inherits (a dead server's workers),
    leaving our children to their Popen."""
    ours = {child.pid for child in children}
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in ours:
            return
        os.waitpid(info.si_pid, 0)


def _failure_status(status: int) -> int:
    """A child's status as ours: non-zero, 128+N for a child killed by signal N."""
    if status < 0:
        return 128 - status
    return status or 1


def _prctl(option: int, value: int) -> bool:
    """Linux's prctl(2); False where it is missing or refused."""
    prctl = _libc_prctl()
    return prctl is not None and prctl(option, value, 0, 0, 0) == 0


def _libc_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn: SIGTERM to the child should the supervisor die (Linux). The
    C function is looked up here, before the fork, not in the child."""
    prctl = _libc_prctl()

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died already
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec
