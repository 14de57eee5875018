"""The HTTP request metrics: counted in each worker's memory, added up across workers by /metrics.

Counting a request is a few dictionary operations. Each worker writes its sums to
the server's metrics directory (``PROMETHEUS_MULTIPROC_DIR``) about once a second,
and the worker that answers /metrics writes its own first, so /metrics adds up
every worker's requests but the last second of the others'. prometheus-client's
multiprocess values cost three locked writes to a memory-mapped file per request
instead, the largest part of what the metrics cost a request (bench/README.md).
"""

from __future__ import annotations

import atexit
import bisect
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

# Seconds: the latency histogram's upper bounds (then +Inf).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
WRITE_EVERY_SECONDS = 1.0
_FILE_PREFIX = "http_requests_"

Series = tuple[str, str, int]  # endpoint (the route), method, status
# [count, sum of seconds, count per bucket (the last: above every bound)]
Sums = list[float]


class RequestStats:
    """One process's requests, by endpoint, method and status."""

    def __init__(self, directory: str | None) -> None:
        self._directory = directory
        self._sums: dict[Series, Sums] = {}
        self._lock = threading.Lock()
        self._changed = False  # since the last write
        self._writer: threading.Thread | None = None

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        key = (endpoint, method, status)
        with self._lock:
            sums = self._sums.get(key)
            if sums is None:
                sums = self._sums[key] = [0.0] * (3 + len(BUCKETS))
            sums[0] += 1
            sums[1] += seconds
            sums[2 + bisect.bisect_left(BUCKETS, seconds)] += 1
            self._changed = True
        if self._directory is not None and self._writer is None:
            self._start_writing()

    def snapshot(self) -> dict[Series, Sums]:
        with self._lock:
            return {key: list(sums) for key, sums in self._sums.items()}

    def write(self) -> None:
        """This process's sums into the metrics directory (replacing its last ones)."""
        if self._directory is None:
            return
        self._changed = False
        rows = [[*key, *sums] for key, sums in self.snapshot().items()]
        target = Path(self._directory, f"{_FILE_PREFIX}{os.getpid()}.json")
        with tempfile.NamedTemporaryFile("w", dir=self._directory, delete=False) as staged:
            json.dump(rows, staged)
        os.replace(staged.name, target)

    def _start_writing(self) -> None:
        with self._lock:
            if self._writer is not None:
                return
            self._writer = threading.Thread(target=self._keep_writing, daemon=True)
        self._writer.start()
        atexit.register(self.write)

    def _keep_writing(self) -> None:
        while True:
            time.sleep(WRITE_EVERY_SECONDS)
            if self._changed:
                self.write()


class RequestCollector(Collector):
    """The requests counter and latency histogram of every worker (of this process
    alone outside the server)."""

    def __init__(self, stats: RequestStats, directory: str | None) -> None:
        self._stats = stats
        self._directory = directory

    def collect(self) -> Iterator[Metric]:
        sums = _added_up(self._every_process())
        requests = CounterMetricFamily(
            "allocation_http_requests",
            "HTTP requests answered",
            labels=["endpoint", "method", "status"],
        )
        latency = HistogramMetricFamily(
            "allocation_http_request_seconds",
            "Time to answer an HTTP request",
            labels=["endpoint", "method"],
        )
        by_route: dict[tuple[str, str], Sums] = {}
        for (endpoint, method, status), row in sorted(sums.items()):
            requests.add_metric([endpoint, method, str(status)], row[0])
            _add(by_route.setdefault((endpoint, method), [0.0] * len(row)), row)
        for labels, row in by_route.items():
            latency.add_metric(list(labels), _cumulative(row), sum_value=row[1])
        yield requests
        yield latency

    def _every_process(self) -> Iterator[dict[Series, Sums]]:
        if self._directory is None:
            yield self._stats.snapshot()
            return
        self._stats.write()
        for path in Path(self._directory).glob(f"{_FILE_PREFIX}*.json"):
            try:
                rows = json.loads(path.read_text())
            except (OSError, ValueError):  # a worker replacing its file just now
                continue
            yield {(row[0], row[1], int(row[2])): row[3:] for row in rows}


def _added_up(processes: Iterator[dict[Series, Sums]]) -> dict[Series, Sums]:
    total: dict[Series, Sums] = {}
    for sums in processes:
        for key, row in sums.items():
            _add(total.setdefault(key, [0.0] * len(row)), row)
    return total


def _add(into: Sums, row: Sums) -> None:
    for i, value in enumerate(row):
        into[i] += value


def _cumulative(row: Sums) -> list[tuple[str, float]]:
    """Prometheus's buckets: how many took at most each bound, +Inf last."""
    buckets, seen = [], 0.0
    for bound, count in zip((*map(str, BUCKETS), "+Inf"), row[2:], strict=True):
        seen += count
        buckets.append((bound, seen))
    return buckets
