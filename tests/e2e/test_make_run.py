"""`make run`, for real: it stops everything it started, however it ends.

make runs in a session of its own, so every process it starts, however deep,
is found by the session id (make's pid) and, should a test fail, killed.
The venv is this test run's and is not reinstalled (``-o install-runtime``): the
subject is the `run` recipe, not the install.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devtools.servers import free_port, kill_session, session_processes, start_process
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
pytestmark = pytest.mark.slow


class MakeRun:
    """`make run` on a port, with its output in a log."""

    def __init__(self, tmp_path: Path, port: int, redis_url: str | None) -> None:
        self.port = port
        self.log = tmp_path / "make-run.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
        env.update(HOST="127.0.0.1", PORT=str(port), LOG_LEVEL="INFO")
        env.update(DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite3")
        if redis_url is not None:
            env["REDIS_URL"] = redis_url
        self.process = start_process(
            ["make", "--no-print-directory", "-o", "install-runtime", f"VENV={VENV}", "run"],
            self.log,
            cwd=ROOT,
            env=env,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def detail(self) -> str:
        left = "\n".join(session_processes(self.process.pid))
        return f"left in the session:\n{left}\nmake run's output:\n{self.output()[-4000:]}"

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"make exited with {self.process.returncode}\n{self.detail()}")
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/health", timeout=2).ok
        except requests.RequestException:
            return False

    def exit_status(self, timeout: float) -> int:
        """make's exit status (negative: a signal), which must come within ``timeout`` s."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"make still running after {timeout}s\n{self.detail()}") from None

    def assert_all_gone(self, within: float) -> None:
        wait_until(
            "no process left of make run's session",
            lambda: not session_processes(self.process.pid),
            timeout=within,
            detail=self.detail,
        )

    def kill_everything(self) -> None:
        """SIGKILL make and whatever is left of its session (all started by this test)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(10)
        kill_session(self.process.pid)


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[list[MakeRun]]:
    runs: list[MakeRun] = []
    yield runs
    for run in runs:
        run.kill_everything()


def start(runs: list[MakeRun], tmp_path: Path, port: int, redis_url: str | None = None) -> MakeRun:
    run = MakeRun(tmp_path, port, redis_url)
    runs.append(run)
    return run


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_when_the_port_is_taken_make_run_fails_and_stops_the_relay(
    make_run: list[MakeRun], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        run = start(make_run, tmp_path, taken.getsockname()[1])

        assert run.exit_status(timeout=60) > 0, run.detail()
        run.assert_all_gone(within=2)
    output = run.output()
    assert "started relay" in output and "relay stopped" in output, run.detail()
    assert "api exited: stopping the others" in output, run.detail()


@pytest.mark.parametrize("with_redis", [False, True], ids=["without Redis", "with Redis"])
def test_sigterm_to_make_stops_everything_within_5_seconds(
    make_run: list[MakeRun], tmp_path: Path, request: pytest.FixtureRequest, with_redis: bool
) -> None:
    redis_url = request.getfixturevalue("redis_url") if with_redis else None
    run = start(make_run, tmp_path, free_port(), redis_url)
    wait_until("make run to serve /health", run.healthy, timeout=60, detail=run.detail)
    assert ("started consumer" in run.output()) is with_redis

    stopping = time.monotonic()
    os.kill(run.process.pid, signal.SIGTERM)  # make's pid alone
    assert run.exit_status(timeout=5) != 0
    run.assert_all_gone(within=5 - (time.monotonic() - stopping))
    assert not listening(run.port)
    assert "received SIGTERM: stopping" in run.output(), run.detail()


def test_ctrl_c_stops_everything_within_5_seconds(make_run: list[MakeRun], tmp_path: Path) -> None:
    run = start(make_run, tmp_path, free_port())
    wait_until("make run to serve /health", run.healthy, timeout=60, detail=run.detail)

    stopping = time.monotonic()
    os.killpg(run.process.pid, signal.SIGINT)  # a terminal's Ctrl-C: the foreground group
    assert run.exit_status(timeout=5) != 0
    run.assert_all_gone(within=5 - (time.monotonic() - stopping))
    assert not listening(run.port)
    assert "received SIGINT: stopping" in run.output(), run.detail()
