"""Real processes: `allocation api`, `relay` and `consumer` against real PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import make_url

from devtools.servers import PostgresServer, free_port, start_process, stop_process
from tests.waiting import wait_until

ALLOCATION = str(Path(sys.executable).with_name("allocation"))


@dataclass
class Service:
    """One `allocation …` process, its log, and (for the API) its URL."""

    args: list[str]
    env: dict[str, str]
    log: Path
    url: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    metrics_url: str = ""
    program: list[str] = field(default_factory=lambda: [ALLOCATION])

    def start(self, ready: str | None = None, timeout: float = 30) -> Service:
        """Starts the process (SIGTERMed should the test run die) and waits until it
        answers /health (with a URL) or has logged ``ready``; stops it if it does not."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        process = start_process([*self.program, *self.args], self.log, env=self.env)
        self.process = process

        def started() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"{self.args} exited with {process.returncode} during startup:\n{self.tail()}"
                )
            return self._ready(ready, offset)

        try:
            wait_until(f"{self.args} to start", started, timeout, detail=self.tail)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self, ready: str | None, offset: int) -> bool:
        if self.url:
            try:
                return requests.get(f"{self.url}/health", timeout=2).status_code == 200
            except requests.RequestException:  # not listening yet, or busy booting
                return False
        return ready is None or ready in self.log.read_bytes()[offset:].decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """``sig``, then SIGKILL after 15 s; the exit code (None if never started)."""
        if self.process is None:
            return None
        return stop_process(self.process, sig, timeout=15)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self) -> str:
        """The end of the log, for a failure's message."""
        return self.output()[-3000:]


def service_environment(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        LOG_LEVEL="INFO",
        CONSUMER_CLAIM_IDLE_MS="1000",
        RELAY_POLL_MS="200",
        **extra,
    )
    return env


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ALLOCATION, *args], env=env, capture_output=True, text=True, timeout=60)


def migrate(env: dict[str, str]) -> None:
    subprocess.run([ALLOCATION, "migrate"], env=env, check=True, capture_output=True, timeout=60)


def start_api(
    env: dict[str, str], log: Path, program: list[str] | None = None, threads: int = 4
) -> Service:
    port = free_port()
    api = Service(
        ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]
        + ["--threads", str(threads)],
        env,
        log,
        url=f"http://127.0.0.1:{port}",
    )
    if program is not None:
        api.program = program
    return api.start()


def start_relay(env: dict[str, str], log: Path) -> Service:
    return Service(["relay"], env, log).start(ready="relaying the outbox")


def start_consumer(env: dict[str, str], log: Path, metrics_port: int | None = None) -> Service:
    args = (
        ["consumer"] if metrics_port is None else ["consumer", "--metrics-port", str(metrics_port)]
    )
    consumer = Service(args, env, log, url="")
    consumer.metrics_url = "" if metrics_port is None else f"http://127.0.0.1:{metrics_port}"
    consumer.start(ready="listening on change_batch_quantity")
    try:
        wait_until(
            "the consumer reading its stream",
            lambda: "reading stream change_batch_quantity" in consumer.output(),
            timeout=30,
            detail=consumer.tail,
        )
    except BaseException:
        consumer.stop()
        raise
    return consumer


# The throwaway server trusts every local connection, whatever its password: the
# services are given one so that a test can see it never reaches a log.
E2E_DATABASE_PASSWORD = "e2e-password-never-logged"


@pytest.fixture(scope="session")
def e2e_environment(
    e2e_database_url: str, redis_url: str, postgres_server: PostgresServer | None
) -> dict[str, str]:
    url = make_url(e2e_database_url)
    if postgres_server is not None and url.password is None:
        url = url.set(password=E2E_DATABASE_PASSWORD)
    env = service_environment(url.render_as_string(hide_password=False), redis_url)
    migrate(env)
    return env


@pytest.fixture(scope="session")
def relay(
    e2e_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    service = start_relay(e2e_environment, tmp_path_factory.mktemp("relay") / "relay.log")
    yield service
    assert service.stop() == 0, f"{service.args} did not exit cleanly:\n{service.output()[-2000:]}"


@pytest.fixture(scope="session")
def api(
    e2e_environment: dict[str, str], relay: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    service = start_api(e2e_environment, tmp_path_factory.mktemp("api") / "api.log")
    yield service
    assert service.stop() == 0, f"{service.args} did not exit cleanly:\n{service.output()[-2000:]}"


@pytest.fixture(scope="session")
def consumer(
    e2e_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    log = tmp_path_factory.mktemp("consumer") / "consumer.log"
    service = start_consumer(e2e_environment, log, metrics_port=free_port())
    yield service
    assert service.stop() == 0, f"{service.args} did not exit cleanly:\n{service.output()[-2000:]}"


@pytest.fixture
def publisher(redis_url: str) -> Iterator[redis.Redis]:
    """A Redis client for a test to publish its messages with."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def metric_total(metrics_url: str, prefix: str) -> tuple[float, str]:
    """The sum of the samples whose line starts with ``prefix`` in one /metrics answer
    (every worker's, summed by the server), and the answer."""
    text = requests.get(f"{metrics_url}/metrics", timeout=10).text
    lines = text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix)), text


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
