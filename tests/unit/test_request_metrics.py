"""The HTTP request metrics, counted per process and added up from the metrics directory,
read exactly as prometheus-client's own counter and histogram would be."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from allocation.adapters.request_metrics import BUCKETS, RequestCollector, RequestStats

SEEN = [
    ("/allocate", "POST", 202, 0.004),
    ("/allocate", "POST", 202, 0.0009),
    ("/allocate", "POST", 409, 0.03),
    ("/allocations/<path:orderid>", "GET", 200, 3.5),
    ("/allocations/<path:orderid>", "GET", 404, 0.001),
]


def as_prometheus_would(seen: list[tuple[str, str, int, float]]) -> set[str]:
    registry = CollectorRegistry()
    requests = Counter(
        "allocation_http_requests",
        "HTTP requests answered",
        ["endpoint", "method", "status"],
        registry=registry,
    )
    latency = Histogram(
        "allocation_http_request_seconds",
        "Time to answer an HTTP request",
        ["endpoint", "method"],
        buckets=BUCKETS,
        registry=registry,
    )
    for endpoint, method, status, seconds in seen:
        requests.labels(endpoint, method, str(status)).inc()
        latency.labels(endpoint, method).observe(seconds)
    return _samples(registry)


def _samples(registry: CollectorRegistry) -> set[str]:
    lines = generate_latest(registry).decode().splitlines()
    return {line for line in lines if line and "_created" not in line}


def test_one_process_is_exposed_as_prometheus_exposes_its_own_metrics() -> None:
    stats = RequestStats(None)
    for seen in SEEN:
        stats.observe(*seen)
    registry = CollectorRegistry()
    registry.register(RequestCollector(stats, None))
    assert _samples(registry) == as_prometheus_would(SEEN)


def test_the_processes_of_a_server_are_added_up(tmp_path: Path) -> None:
    first, second = RequestStats(str(tmp_path)), RequestStats(str(tmp_path))
    for seen in SEEN[:3]:
        first.observe(*seen)
    first.write()
    # Both live in this test's process: the first one's file moves to another
    # worker's name, as if another process had written it.
    [written] = tmp_path.glob("http_requests_*.json")
    written.rename(tmp_path / "http_requests_1.json")
    for seen in SEEN[3:]:
        second.observe(*seen)  # this worker's own, written when /metrics reads
    registry = CollectorRegistry()
    registry.register(RequestCollector(second, str(tmp_path)))
    assert _samples(registry) == as_prometheus_would(SEEN)
