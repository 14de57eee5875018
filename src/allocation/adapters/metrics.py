"""Prometheus metrics: defined once here, updated by the edges and by event handlers.

The API server runs several worker processes; with PROMETHEUS_MULTIPROC_DIR
set (``allocation api`` sets it) the workers share their samples through files in
that directory and /metrics adds them up.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
    values,
)

from allocation.adapters.request_metrics import RequestCollector, RequestStats
from allocation.adapters.this_process import ThisProcess
from allocation.domain import events
from allocation.service_layer.unit_of_work import AbstractUnitOfWork

# prometheus-client's multiprocess values ask for the pid on every increment (three
# system calls a request); its documented hook, MultiProcessValue(process_identifier),
# takes the cached answer instead.
if values.ValueClass is not values.MutexValue:  # multiprocess mode (PROMETHEUS_MULTIPROC_DIR)
    values.ValueClass = values.MultiProcessValue(  # type: ignore[no-untyped-call]
        process_identifier=ThisProcess.identifier
    )

ALLOCATIONS = Counter("allocation_allocations_total", "Order lines allocated (reallocations too)")
OUT_OF_STOCK = Counter("allocation_out_of_stock_total", "Order lines that found no stock")
CONCURRENCY_RETRIES = Counter(
    "allocation_concurrency_retries_total", "Handlers run again after losing a concurrency race"
)
OUTBOX_UNSENT = Gauge(
    "allocation_outbox_unsent", "Outbox messages not yet published", multiprocess_mode="mostrecent"
)
OUTBOX_OLDEST_AGE = Gauge(
    "allocation_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox message",
    multiprocess_mode="mostrecent",
)
RELAY_PUBLISHED = Counter("allocation_relay_published_total", "Outbox messages published")
HOLDS_EXPIRED = Counter("allocation_holds_expired_total", "Holds ended because their time was up")
CONSUMER_MESSAGES = Counter(
    "allocation_consumer_messages_total",
    "Inbound messages by outcome",
    ["outcome"],  # applied, duplicate, dead-lettered, retry later
)


# Failovers and lost connections, per process (the API's workers each count their own).
DATABASE_RECONNECTS = Counter(
    "allocation_database_reconnects_total",
    "Pooled database connections found dropped (the pool is then replaced)",
)
DATABASE_FAILOVERS = Counter(
    "allocation_database_failovers_total",
    "New database connections that reached another server than the one before",
)
REDIS_RECONNECTS = Counter(
    "allocation_redis_reconnects_total", "Redis connections lost and made again"
)
REDIS_FAILOVERS = Counter(
    "allocation_redis_failovers_total", "Times the Sentinels named another Redis master"
)
RELAY_REPLICAS = Gauge(
    "allocation_relay_redis_replicas",
    "Replicas connected to the Redis master at the relay's last publish",
    multiprocess_mode="mostrecent",
)
RELAY_UNCONFIRMED = Counter(
    "allocation_relay_unconfirmed_total",
    "Messages published while the Redis master had no replica to confirm them",
)


@functools.cache
def _requests() -> RequestStats:
    """This process's request counts (the HTTP metrics: request_metrics.py)."""
    stats = RequestStats(_multiprocess_directory())
    if _multiprocess_directory() is None:
        REGISTRY.register(RequestCollector(stats, None))
    return stats


def _multiprocess_directory() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Counts one answered request and its latency."""
    _requests().observe(endpoint, method, status, seconds)


def count_event(event: events.Event, uow: AbstractUnitOfWork) -> None:
    """An event handler: domain events as counters."""
    if isinstance(event, events.Allocated):
        ALLOCATIONS.inc()
    elif isinstance(event, events.OutOfStock):
        OUT_OF_STOCK.inc()


def count_retry() -> None:
    CONCURRENCY_RETRIES.inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric of this process (or of all workers)."""
    stats, directory = _requests(), _multiprocess_directory()
    if directory is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(RequestCollector(stats, directory))
    return generate_latest(registry), CONTENT_TYPE_LATEST
