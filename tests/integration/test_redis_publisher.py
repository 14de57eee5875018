"""The relay's publisher on real Redis: a batch counts as published once a replica has
it (WAIT), on one Redis as soon as it has it, and is published again otherwise."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from allocation.adapters import metrics
from allocation.adapters.redis_publisher import RedisPublisher
from allocation.domain.exceptions import PublishUnconfirmed
from devtools.failover import RedisSentinel
from devtools.failover.redis import command
from devtools.servers import RedisServer

WAIT_MS = 1500
BATCH = [("line_allocated", {"orderid": f"o{i}", "message_id": f"m{i}"}) for i in range(3)]


@pytest.fixture
def replicated() -> Iterator[RedisSentinel]:
    """A master and one replica (no Sentinels: nothing moves them behind the test's back)."""
    with RedisSentinel(sentinels=0) as servers:
        yield servers


def replica_port(servers: RedisSentinel) -> int:
    master = servers.master_port()
    return next(port for port in servers.servers if port != master)


def publisher(port: int) -> RedisPublisher:
    client = redis.Redis(port=port, socket_timeout=5)
    return RedisPublisher(client, replica_wait_ms=WAIT_MS)


def orderids(port: int) -> list[str]:
    entries = redis.Redis(port=port).xrange("line_allocated")
    return [json.loads(fields[b"data"])["orderid"] for _, fields in entries]


def unconfirmed() -> float:
    return float(metrics.RELAY_UNCONFIRMED._value.get())


def test_one_redis_has_no_replica_to_wait_for(redis_server: RedisServer | None) -> None:
    if redis_server is None:
        pytest.skip("REDIS_URL points at a Redis whose replicas this test cannot know")
    redis.Redis.from_url(redis_server.url).delete("line_allocated")
    before, started = unconfirmed(), time.monotonic()
    publisher(redis_server.port).publish_batch(BATCH)
    assert time.monotonic() - started < WAIT_MS / 1000 / 2  # no WAIT was sent
    assert orderids(redis_server.port) == ["o0", "o1", "o2"]
    assert unconfirmed() == before + 3


def test_with_a_replica_a_batch_is_published_once_the_replica_has_it(
    replicated: RedisSentinel,
) -> None:
    before = unconfirmed()
    publisher(replicated.master_port()).publish_batch(BATCH)
    assert orderids(replica_port(replicated)) == ["o0", "o1", "o2"]
    assert unconfirmed() == before
    assert metrics.RELAY_REPLICAS._value.get() == 1


def test_a_batch_no_replica_confirms_in_time_is_unconfirmed(replicated: RedisSentinel) -> None:
    """The replica is connected but does not answer (stopped): the relay must not
    mark the batch sent, and the wait is bounded."""
    relay = publisher(replicated.master_port())
    relay.publish_batch(BATCH[:1])
    replica = replicated.servers[replica_port(replicated)]
    assert replica is not None
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(PublishUnconfirmed) as raised:
            relay.publish_batch(BATCH[1:])
        assert WAIT_MS / 1000 <= time.monotonic() - started < WAIT_MS / 1000 + 2
        assert raised.value.detail == f"none confirmed within {WAIT_MS} ms"
    finally:
        os.kill(replica.pid, signal.SIGCONT)


def test_without_replica_batches_go_unconfirmed_and_a_replica_back_is_waited_for(
    replicated: RedisSentinel, caplog: pytest.LogCaptureFixture
) -> None:
    """The master just promoted has no replica: publishing goes on as with one Redis,
    said once. When a replica connects again, the batch that learned it is published
    again, for the replica to confirm, and so is every batch after it."""
    master, replica = replicated.master_port(), replica_port(replicated)
    relay = publisher(master)
    relay.publish_batch(BATCH[:1])
    command(replica, "REPLICAOF", "NO", "ONE")
    before = unconfirmed()
    relay.publish_batch(BATCH[1:2])
    relay.publish_batch(BATCH[2:])
    assert unconfirmed() == before + 2
    command(replica, "REPLICAOF", "127.0.0.1", master)
    replicated.wait_for_replica(replica, master)
    with pytest.raises(PublishUnconfirmed) as raised:
        relay.publish_batch(BATCH[:1])
    assert raised.value.detail.startswith("a replica connected meanwhile")
    relay.publish_batch(BATCH[:1])
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len([w for w in warnings if "no replica connected" in w]) == 1
