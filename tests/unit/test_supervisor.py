"""The supervisor behind `allocation run`, with tiny Python programs for children.

Each test runs the supervisor in a process of its own, in a session of its own:
signals are real, the supervisor's reaping cannot touch the test run's children,
and every process it leaves can be found (by session id) and killed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from allocation.entrypoints.cli.supervisor import allocation, service_programs
from devtools.servers import kill_session, session_processes, start_process
from tests.waiting import wait_until

# argv: grace seconds, then one child's Python code per argument.
SUPERVISE = """
import logging, sys
from allocation.entrypoints.cli.supervisor import Program, supervise
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
programs = [
    Program(f"child{i}", (sys.executable, "-c", code)) for i, code in enumerate(sys.argv[2:])
]
sys.exit(supervise(programs, grace=float(sys.argv[1])))
"""
# Runs the supervisor as its child, then waits to be killed.
PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", *sys.argv[1:]])
time.sleep(60)
"""
SLEEPER = "import os, time; print('ready', os.getpid(), flush=True); time.sleep(60)"
DEAF = (
    "import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', os.getpid(), flush=True); time.sleep(60)"
)
# Leaves a SIGTERM-deaf process in its group behind, like a server dying without its workers.
ORPHANING = (
    "import subprocess, sys; "
    f"worker = subprocess.Popen([sys.executable, '-c', {DEAF!r}], stdout=subprocess.PIPE); "
    "print('worker', worker.stdout.readline().decode().strip(), flush=True); sys.exit(4)"
)


class Run:
    """The supervisor (or its parent) in a new session, its output in a log."""

    def __init__(self, log: Path, args: list[str]) -> None:
        self.log = log
        self.process = start_process([sys.executable, "-c", *args], log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, count: int = 1) -> None:
        wait_until(
            f"{count} × {text!r}",
            lambda: self.output().count(text) >= count,
            10,
            detail=self.output,
        )

    def exit_status(self, timeout: float) -> int:
        """Its exit status, which must come within ``timeout`` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.output()}") from None

    def assert_nothing_left(self) -> None:
        wait_until(
            "no process left in the session",
            lambda: not session_processes(self.process.pid),
            timeout=3,
            detail=lambda: "\n".join(session_processes(self.process.pid)) + "\n" + self.output(),
        )


@pytest.fixture
def run(tmp_path: Path) -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for started in runs:
        if started.process.poll() is None:
            started.process.kill()
        started.process.wait(10)
        kill_session(started.process.pid)


def supervise(runs: list[Run], log: Path, grace: float, *children: str) -> Run:
    started = Run(log, [SUPERVISE, str(grace), *children])
    runs.append(started)
    return started


@pytest.mark.parametrize(
    ("code", "status"),
    [("import sys; sys.exit(3)", 3), ("pass", 1), ("import os; os.kill(os.getpid(), 9)", 137)],
    ids=["status 3", "status 0", "killed"],
)
def test_a_child_exiting_stops_the_others_and_fails(
    run: list[Run], tmp_path: Path, code: str, status: int
) -> None:
    supervisor = supervise(
        run, tmp_path / "log", 3, SLEEPER, f"import time; time.sleep(0.5); {code}"
    )
    supervisor.wait_for("ready")

    assert supervisor.exit_status(timeout=10) == status
    supervisor.assert_nothing_left()
    assert "child1 exited: stopping the others" in supervisor.output()
    assert "did not stop" not in supervisor.output()


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"]
)
def test_a_stop_signal_stops_every_child_and_exits_0(
    run: list[Run], tmp_path: Path, sig: signal.Signals
) -> None:
    supervisor = supervise(run, tmp_path / "log", 3, SLEEPER, SLEEPER)
    supervisor.wait_for("ready", 2)

    started = time.monotonic()
    supervisor.process.send_signal(sig)
    assert supervisor.exit_status(timeout=5) == 0
    assert time.monotonic() - started < 2
    supervisor.assert_nothing_left()
    output = supervisor.output()
    assert f"received {sig.name}: stopping" in output
    assert output.count("started child") == 2 and output.count("exited with status") == 2


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(
    run: list[Run], tmp_path: Path
) -> None:
    supervisor = supervise(run, tmp_path / "log", 0.5, SLEEPER, DEAF)
    supervisor.wait_for("ready", 2)

    started = time.monotonic()
    supervisor.process.send_signal(signal.SIGTERM)
    assert supervisor.exit_status(timeout=5) == 0
    assert 0.5 <= time.monotonic() - started < 3
    supervisor.assert_nothing_left()
    assert "child1 did not stop within 0.5s: killing it" in supervisor.output()


def test_what_a_dead_child_leaves_in_its_process_group_is_killed_and_reaped(
    run: list[Run], tmp_path: Path
) -> None:
    supervisor = supervise(run, tmp_path / "log", 2, SLEEPER, ORPHANING)
    supervisor.wait_for("child1 exited: stopping the others")
    worker = int(supervisor.output().split("worker ready ")[1].split()[0])
    stat = Path(f"/proc/{worker}/stat").read_text()
    # Orphaned, it became the supervisor's child (a subreaper's), to be reaped by it.
    assert int(stat[stat.rfind(")") + 2 :].split()[1]) == supervisor.process.pid

    assert supervisor.exit_status(timeout=10) == 4
    supervisor.assert_nothing_left()
    assert "child1 did not stop within 2s: killing it" in supervisor.output()


def test_the_supervisor_stops_everything_when_its_parent_dies(
    run: list[Run], tmp_path: Path
) -> None:
    parent = Run(tmp_path / "log", [PARENT, SUPERVISE, "3", SLEEPER, SLEEPER])
    run.append(parent)
    parent.wait_for("ready", 2)

    parent.process.kill()
    parent.process.wait(10)
    parent.wait_for("is gone: stopping")
    parent.assert_nothing_left()


def test_the_children_run_this_very_package() -> None:
    version = subprocess.run(
        allocation("--version").args, capture_output=True, text=True, timeout=30, check=True
    )
    assert version.stdout.startswith("allocation, version")


def test_the_service_is_the_api_the_relay_the_hold_expiry_and_with_redis_the_consumer() -> None:
    def names(with_consumer: bool) -> list[str]:
        return [program.name for program in service_programs("0.0.0.0", 8080, with_consumer)]

    assert names(False) == ["api", "relay", "hold-expiry"]
    assert names(True) == ["api", "relay", "hold-expiry", "consumer"]
    assert service_programs("0.0.0.0", 8080, False)[0].args[-5:] == (
        "api",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    )
