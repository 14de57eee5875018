"""Faults: Redis and PostgreSQL going away, and the relay dying mid-backlog."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import create_engine, text

from devtools.servers import PostgresServer, RedisServer
from tests.e2e.conftest import (
    Service,
    migrate,
    service_environment,
    start_api,
    start_relay,
    unique,
)
from tests.e2e.test_api import add_batch, allocate
from tests.e2e.test_consumer import wait_for_quantity
from tests.waiting import wait_until


def stream_messages(client: redis.Redis, stream: str) -> list[dict[str, object]]:
    return [json.loads(fields[b"data"]) for _, fields in client.xrange(stream)]


def test_allocations_made_while_redis_is_down_are_all_delivered_after_it_returns(
    api: Service,
    relay: Service,
    consumer: Service,
    redis_server: RedisServer | None,
    e2e_environment: dict[str, str],
) -> None:
    if redis_server is None:
        pytest.skip("REDIS_URL points at a Redis this suite cannot stop")
    sku = unique("sku")
    add_batch(api, unique("batch"), sku, 100)
    orderids = [unique("order") for _ in range(20)]

    redis_server.stop_keep_data()
    try:
        statuses = [allocate(api, orderid, sku, 1).status_code for orderid in orderids]
        reads = [
            requests.get(f"{api.url}/allocations/{o}", timeout=10).status_code for o in orderids[:3]
        ]
    finally:
        redis_server.restart()
    assert statuses == [202] * 20
    assert reads == [200] * 3

    # The stream is the feed that survives a subscriber connecting late.
    client = redis.Redis.from_url(redis_server.url)

    def missing() -> list[str]:
        delivered = {m["orderid"] for m in stream_messages(client, "line_allocated")}
        return [orderid for orderid in orderids if orderid not in delivered]

    try:
        wait_until(
            "every allocation on the stream",
            lambda: not missing(),
            timeout=10,
            interval=0.1,
            detail=lambda: f"missing {missing()}",
        )
        # The consumer came back too: its stream group is made anew on the empty Redis.
        ref = unique("batch")
        add_batch(api, ref, sku + "-x", 10)
        client.xadd("change_batch_quantity", {"data": json.dumps({"batchref": ref, "qty": 2})})
        wait_for_quantity(e2e_environment["DATABASE_URL"], ref, 2, timeout=15)
    finally:
        client.close()


@pytest.fixture
def own_servers() -> Iterator[tuple[PostgresServer, RedisServer]]:
    with PostgresServer() as postgres, RedisServer() as own_redis:
        yield postgres, own_redis


def fill_outbox(database_url: str, count: int) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text("""
            WITH ids AS (SELECT g, gen_random_uuid()::text AS message_id
                         FROM generate_series(1, :count) AS g)
            INSERT INTO outbox (message_id, channel, sku, payload, occurred_at)
            SELECT message_id, 'line_allocated', 'SKU',
                   json_build_object('orderid', 'o' || g, 'sku', 'SKU', 'qty', 1,
                                     'batchref', 'b1', 'message_id', message_id,
                                     'occurred_at', now())::text,
                   now()
            FROM ids ORDER BY g
        """),
            {"count": count},
        )
    engine.dispose()


def test_a_relay_killed_mid_backlog_loses_nothing_when_restarted(
    own_servers: tuple[PostgresServer, RedisServer], tmp_path: Path
) -> None:
    postgres, own_redis = own_servers
    env = service_environment(
        postgres.create_database("relay_fault"), own_redis.url, RELAY_BATCH_SIZE="10"
    )
    migrate(env)
    fill_outbox(env["DATABASE_URL"], 3000)
    client = redis.Redis.from_url(own_redis.url)

    relay = start_relay(env, tmp_path / "relay.log")
    try:
        wait_until(
            "the relay to publish 200 messages",
            lambda: client.xlen("line_allocated") >= 200,
            timeout=30,
            interval=0.005,
            detail=relay.tail,
        )
    finally:
        relay.stop(signal.SIGKILL)
    published_before_restart = client.xlen("line_allocated")
    assert published_before_restart < 3000, "the relay finished before it could be killed"

    relay = start_relay(env, tmp_path / "relay.log")
    try:
        wait_until(
            "all 3000 messages on the stream (were some lost?)",
            lambda: (
                len({m["message_id"] for m in stream_messages(client, "line_allocated")}) >= 3000
            ),
            timeout=30,
            interval=0.1,
            detail=relay.tail,
        )
    finally:
        exit_code = relay.stop()  # SIGTERM: finishes the batch in hand, exits 0
    assert exit_code == 0, relay.tail()

    messages = stream_messages(client, "line_allocated")
    by_id: dict[object, dict[str, object]] = {}
    for message in messages:
        assert by_id.setdefault(message["message_id"], message) == message
    assert {m["orderid"] for m in messages} == {f"o{i}" for i in range(1, 3001)}
    client.close()


def test_the_api_answers_503_while_postgres_is_down_and_recovers_by_itself(
    own_servers: tuple[PostgresServer, RedisServer], tmp_path: Path
) -> None:
    postgres, own_redis = own_servers
    env = service_environment(postgres.create_database("db_fault"), own_redis.url)
    migrate(env)
    api = start_api(env, tmp_path / "api.log")
    try:
        sku = unique("sku")
        add_batch(api, unique("batch"), sku, 10)
        assert allocate(api, "before", sku, 1).status_code == 202

        postgres.stop_keep_data()
        try:
            with ThreadPoolExecutor(4) as pool:
                down = list(pool.map(lambda i: allocate(api, f"down-{i}", sku, 1), range(8)))
            read = requests.get(f"{api.url}/allocations/before", timeout=10)
        finally:
            postgres.restart()

        for response in [*down, read]:
            assert response.status_code == 503, response.text
            assert response.json() == {
                "message": "The database is unavailable; please retry shortly"
            }
            assert response.headers["Retry-After"] == "2"
        assert allocate(api, "after", sku, 1).status_code == 202
        assert requests.get(f"{api.url}/allocations/before", timeout=10).status_code == 200
        assert "Traceback" not in api.output()
    finally:
        api.stop()
