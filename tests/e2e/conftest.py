"""Real processes: `allocation api` and `allocation consumer` against real PostgreSQL and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.servers import free_port

ALLOCATION = str(Path(sys.executable).with_name("allocation"))


@dataclass
class Api:
    url: str
    process: subprocess.Popen[bytes]


def service_environment(database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATABASE_URL=database_url, REDIS_URL=redis_url, LOG_LEVEL="INFO")
    return env


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"API exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"API did not answer in 30s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def e2e_environment(postgres_url: str, redis_url: str) -> dict[str, str]:
    env = service_environment(postgres_url, redis_url)
    subprocess.run([ALLOCATION, "migrate"], env=env, check=True, capture_output=True, timeout=60)
    return env


@pytest.fixture(scope="session")
def api(e2e_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    port = free_port()
    log = tmp_path_factory.mktemp("api") / "api.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [ALLOCATION, "api", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2", "--threads", "4"],
            env=e2e_environment, stdout=output, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, process, log)
        yield Api(url, process)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def consumer(e2e_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("consumer") / "consumer.log"
    with log.open("wb") as output:
        process = subprocess.Popen([ALLOCATION, "consumer"], env=e2e_environment,
                                   stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "listening on change_batch_quantity" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"consumer did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    try:
        yield log
    finally:
        stop(process)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
