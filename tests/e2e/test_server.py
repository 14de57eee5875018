"""What production needs from the HTTP server behind `allocation api` (granian).

Each test starts its own API process: they signal it, kill its workers, or
count its requests, which a shared process would not survive or would blur.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.e2e.conftest import Service, start_api, unique
from tests.e2e.test_api import add_batch, allocate
from tests.waiting import wait_until


def child_pids(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (granian forks its workers from it)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children.update(int(child) for child in (task / "children").read_text().split())
        except OSError:  # the thread ended while we looked
            continue
    return children


def worker_pids(api: Service) -> set[int]:
    """The API's workers: its children named "allocation api worker-N"."""
    assert api.process is not None
    workers = set()
    for pid in child_pids(api.process.pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"allocation api worker"):
                workers.add(pid)
        except OSError:  # it exited while we looked
            continue
    return workers


def serving_workers(api: Service) -> set[int]:
    """The API's workers that have started serving (granian logs "[pid] Started worker-N")."""
    started = {int(pid) for pid in re.findall(r"\[(\d+)\] Started worker-\d+", api.output())}
    return worker_pids(api) & started


def all_serving(api: Service, count: int = 2) -> set[int]:
    """Waits for every worker to serve. `Service.start` returns once one answers; a
    worker still booting would miss a SIGTERM (granian only hears it once serving) and
    would take no connections (each worker has its own SO_REUSEPORT socket)."""

    def serving() -> set[int] | None:
        workers = serving_workers(api)
        return workers if len(workers) == count else None

    return wait_until(f"{count} workers serving", serving, timeout=30, detail=api.tail)


@pytest.fixture
def api_log(tmp_path: Path) -> Path:
    return tmp_path / "api.log"


# `allocation api`, started by a program that first imports everything, metrics
# included: the workers' metrics must still add up.
IMPORTS_EVERYTHING_FIRST = [
    sys.executable,
    "-c",
    "import sys, prometheus_client, allocation.adapters.metrics, allocation.bootstrap\n"
    "from allocation.entrypoints.cli.commands import main\n"
    "main(sys.argv[1:])",
]


@pytest.fixture
def own_api(e2e_environment: dict[str, str], api_log: Path) -> Iterator[Service]:
    """A fresh `allocation api` with 2 workers of 4 threads, stopped after the test."""
    yield from _own_api(e2e_environment, api_log, None)


@pytest.fixture
def api_after_imports(e2e_environment: dict[str, str], api_log: Path) -> Iterator[Service]:
    """The same, from a process that imported every module before starting it."""
    yield from _own_api(e2e_environment, api_log, IMPORTS_EVERYTHING_FIRST)


def _own_api(env: dict[str, str], log: Path, program: list[str] | None) -> Iterator[Service]:
    service = start_api(env, log, program)
    try:
        all_serving(service)
        yield service
    finally:
        service.stop()


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(
    own_api: Service, e2e_environment: dict[str, str]
) -> None:
    api = own_api
    assert api.process is not None
    sku, batchref, orderid = unique("sku"), unique("batch"), unique("order")
    add_batch(api, batchref, sku, 10)

    dsn = make_url(e2e_environment["DATABASE_URL"]).set(drivername="postgresql")
    dsn_text = dsn.render_as_string(hide_password=False)
    # One connection holds the product's row lock; another watches who waits on it
    # (pg_stat_activity is a snapshot inside a transaction, so not the holder's).
    blocker = psycopg2.connect(dsn_text, connect_timeout=10)
    watcher = psycopg2.connect(dsn_text, connect_timeout=10)
    watcher.autocommit = True
    pool = ThreadPoolExecutor(1)
    try:
        with blocker.cursor() as cursor:
            cursor.execute("SELECT sku FROM products WHERE sku = %s FOR UPDATE", (sku,))
            assert cursor.fetchone() == (sku,)
        in_flight = pool.submit(allocate, api, orderid, sku, 1)

        def waiting_on_our_lock() -> bool:
            assert not in_flight.done(), f"allocate did not wait: {in_flight.result()}"
            with watcher.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                    (blocker.get_backend_pid(),),
                )
                row = cursor.fetchone()
            return row is not None and row[0] > 0

        wait_until("allocate waiting on the row lock", waiting_on_our_lock)
        api.process.send_signal(signal.SIGTERM)
        wait_until(
            "both workers told to stop",
            lambda: all(f"Stopping worker-{n}" in api.output() for n in (1, 2)),
            detail=api.tail,
        )
        # The workers are stopping: hold the request a while longer. This is the
        # scenario under test (a slow request during shutdown), not synchronisation.
        time.sleep(0.5)
        assert not in_flight.done(), "the request did not wait for the lock"
        assert api.process.poll() is None, f"exited with a request in flight:\n{api.output()}"
        blocker.rollback()  # releases the lock: the allocate goes on
        released = time.monotonic()

        response = in_flight.result(timeout=15)
        assert response.status_code == 202, response.text
        assert response.json() == {"batchref": batchref}
        try:
            exit_code = api.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 10s after its last request:\n{api.tail()}")
        assert exit_code == 0, api.tail()
        assert time.monotonic() - released < 5, api.tail()

        with watcher.cursor() as cursor:
            cursor.execute("SELECT batchref FROM allocations_view WHERE orderid = %s", (orderid,))
            assert cursor.fetchall() == [(batchref,)]
    finally:
        blocker.close()  # releases the lock if a failure left it held
        watcher.close()
        pool.shutdown(wait=True)  # bounded: allocate() has a timeout


def settled_health_count(api: Service) -> float:
    """The count once every worker has handed over its requests so far: the same in
    two answers more than a worker's hand-over interval apart."""
    last: list[float] = []

    def settled() -> float | None:
        last.append(health_requests_counted(api))
        return last[-1] if len(last) > 1 and last[-1] == last[-2] else None

    return wait_until("the request counts settled", settled, timeout=6, interval=1.2)


def health_requests_counted(api: Service) -> float:
    """allocation_http_requests_total for GET /health answered 200, as /metrics reports it."""
    response = requests.get(f"{api.url}/metrics", timeout=5)
    assert response.status_code == 200
    wanted = {"endpoint": "/health", "method": "GET", "status": "200"}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "allocation_http_requests_total" and sample.labels == wanted:
                return sample.value
    return 0.0


def answering_pids(api: Service, request_ids: list[str], timeout: float = 10) -> dict[str, int]:
    """The PID (from the access log line) of the process that answered each request."""

    def all_logged() -> dict[str, int] | None:
        log = api.output()
        found = {}
        for request_id in request_ids:
            match = re.search(rf"\[(\d+)\] request_id={re.escape(request_id)} GET /health 200", log)
            if match is None:
                return None
            found[request_id] = int(match.group(1))
        return found

    return wait_until("an access log line for every request", all_logged, timeout)


def get_health(api: Service, request_id: str) -> requests.Response:
    """GET /health on a fresh connection (no Session), so requests spread over workers."""
    started = time.monotonic()
    try:
        response = requests.get(
            f"{api.url}/health", headers={"X-Request-ID": request_id}, timeout=5
        )
    except requests.RequestException as error:
        pytest.fail(
            f"GET /health {request_id} failed after {time.monotonic() - started:.2f}s: "
            f"{error!r}\n{api.tail()}"
        )
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == request_id
    return response


def test_a_killed_worker_is_replaced_and_the_api_keeps_answering(own_api: Service) -> None:
    api = own_api
    process = api.process
    assert process is not None
    workers = all_serving(api)
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)  # a child of the API process this test started
    # Gone means reaped: until the kernel has closed its files, the dying worker's
    # listening socket (one per worker, SO_REUSEPORT) still takes connections, and
    # closing it resets them. A dying process already shows an empty cmdline.
    wait_until("the killed worker reaped", lambda: victim not in child_pids(process.pid))

    # Until a replacement serves, and after, every request is answered.
    during: list[str] = []

    def replaced() -> set[int] | None:
        request_id = unique("during")
        get_health(api, request_id)
        during.append(request_id)
        now = serving_workers(api)
        return now if len(now) == 2 and victim not in now else None

    now = wait_until("a replacement worker serving", replaced, timeout=15, detail=api.tail)
    assert process.poll() is None, api.tail()
    (newcomer,) = now - workers
    output = api.output()
    assert "Unexpected exit from worker" in output and "Respawning worker" in output, output

    after: list[str] = []

    def newcomer_answered() -> bool:
        batch = [unique("after") for _ in range(10)]
        for request_id in batch:
            get_health(api, request_id)
        after.extend(batch)
        return newcomer in answering_pids(api, batch).values()

    wait_until("a request answered by the new worker", newcomer_answered, timeout=10)
    assert set(answering_pids(api, during + after).values()) <= workers | {newcomer}
    assert api.stop() == 0, api.tail()


def test_slow_clients_do_not_hold_a_worker(e2e_environment: dict[str, str], api_log: Path) -> None:
    # One thread per worker: a server giving each slow connection a worker is stuck at once.
    api = start_api(e2e_environment, api_log, threads=1)
    port = int(api.url.rsplit(":", 1)[1])
    slow: list[socket.socket] = []
    stop = threading.Event()
    dribbler = threading.Thread()
    try:
        all_serving(api)
        sku, orderid = unique("sku"), unique("order")
        add_batch(api, unique("batch"), sku, 1000)
        assert allocate(api, orderid, sku, 1).status_code == 202

        request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
        sent = 0
        send_errors: list[OSError] = []

        def dribble() -> None:  # one byte a second on every slow socket, for 4 seconds
            nonlocal sent
            for index in range(4):
                try:
                    for client in slow:
                        client.sendall(request[index : index + 1])
                except OSError as error:  # the server dropped a slow client
                    send_errors.append(error)
                    return
                sent = index + 1
                if stop.wait(1):
                    return

        dribbler = threading.Thread(target=dribble, daemon=True)
        dribbler.start()
        timings: list[tuple[str, int | str, float]] = []

        def timed(what: str, send: Callable[[], requests.Response]) -> None:
            started = time.monotonic()
            try:
                status: int | str = send().status_code
            except requests.RequestException as error:
                status = type(error).__name__
            timings.append((what, status, round(time.monotonic() - started, 3)))

        while dribbler.is_alive():  # bounded: the dribbler stops after 4 seconds
            for path in ("/health", f"/allocations/{orderid}"):
                timed(f"GET {path}", lambda path=path: requests.get(f"{api.url}{path}", timeout=5))
            timed("POST /allocate", lambda: allocate(api, unique("order"), sku, 1))
            stop.wait(0.05)  # pacing: about 15 rounds of requests a second
        dribbler.join(timeout=5)
        assert sent == 4 and not send_errors, f"slow clients sent {sent} bytes: {send_errors}"

        gets = [elapsed for what, _, elapsed in timings if what.startswith("GET")]
        posts = [elapsed for what, _, elapsed in timings if what.startswith("POST")]
        assert max(gets) < 1, f"slowest GET took {max(gets):.2f}s: {timings}"
        assert max(posts) < 2, f"slowest POST took {max(posts):.2f}s: {timings}"
        assert all(status in (200, 202) for _, status, _ in timings), timings
        assert len(posts) >= 10, timings

        # The slow clients were held, not dropped: each finishes its request and is answered.
        for client in slow:
            client.sendall(request[sent:])
        for client in slow:
            answer = b""
            while b"\r\n" not in answer:
                chunk = client.recv(4096)
                assert chunk, f"a slow client was dropped; got {answer!r}"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer
    finally:
        stop.set()
        if dribbler.is_alive():
            dribbler.join(timeout=5)
        for client in slow:
            client.close()
        api.stop()


@pytest.mark.parametrize("launched", ["own_api", "api_after_imports"])
def test_request_ids_and_metrics_hold_across_workers(
    launched: str, request: pytest.FixtureRequest
) -> None:
    api: Service = request.getfixturevalue(launched)
    own_id = unique("req")
    assert get_health(api, own_id).headers["X-Request-ID"] == own_id
    generated = requests.get(f"{api.url}/health", timeout=5).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated), generated

    before = settled_health_count(api)
    request_ids = [f"n-{uuid.uuid4().hex}" for _ in range(40)]
    for request_id in request_ids:
        get_health(api, request_id)
    # Whichever worker answers /metrics, it reports what every worker counted (each
    # worker hands its counts over about once a second).
    wait_until(
        "every worker's requests counted",
        lambda: health_requests_counted(api) - before == len(request_ids),
        timeout=3,
    )
    for _ in range(6):
        assert health_requests_counted(api) - before == len(request_ids)

    pids = answering_pids(api, request_ids)
    assert len(set(pids.values())) >= 2, f"one worker answered everything: {pids}"
    assert set(pids.values()) <= serving_workers(api)
