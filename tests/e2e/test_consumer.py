"""Reallocation driven by a Redis message through the real consumer process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis
import requests

from tests.e2e.conftest import Api, unique
from tests.e2e.test_api import Subscriber, add_batch, allocate


def wait_for_view(api: Api, orderid: str, expected: list[dict[str, str]]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = requests.get(f"{api.url}/allocations/{orderid}", timeout=10)
        if response.status_code == 200 and response.json() == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"view of {orderid} never became {expected}")


def test_change_batch_quantity_reallocates_and_publishes(
    api: Api, consumer: Path, redis_url: str
) -> None:
    sku, orderid = unique("sku"), unique("order")
    earlier, later = unique("batch1"), unique("batch2")
    add_batch(api, earlier, sku, 10, "2031-01-01")
    add_batch(api, later, sku, 10, "2031-01-02")
    assert allocate(api, orderid, sku, 10).json() == {"batchref": earlier}
    subscriber = Subscriber(redis_url, "line_allocated")
    client = redis.Redis.from_url(redis_url)
    try:
        client.publish("change_batch_quantity", json.dumps({"batchref": earlier, "qty": 5}))

        message = subscriber.wait_for("line_allocated", {"orderid": orderid})
    finally:
        subscriber.close()
        client.close()

    assert message == {"orderid": orderid, "sku": sku, "qty": 10, "batchref": later}
    wait_for_view(api, orderid, [{"sku": sku, "batchref": later}])


def test_bad_messages_are_skipped_and_the_consumer_keeps_going(
    api: Api, consumer: Path, redis_url: str
) -> None:
    sku, orderid = unique("sku"), unique("order")
    first, second = unique("batch1"), unique("batch2")
    add_batch(api, first, sku, 10)
    add_batch(api, second, sku, 10, "2031-01-01")
    allocate(api, orderid, sku, 8)
    client = redis.Redis.from_url(redis_url)
    try:
        for bad in (b"{nope", b'{"batchref": 3}', json.dumps({"batchref": unique("x"), "qty": 1})):
            client.publish("change_batch_quantity", bad)
        client.publish("change_batch_quantity", json.dumps({"batchref": first, "qty": 2}))
    finally:
        client.close()

    wait_for_view(api, orderid, [{"sku": sku, "batchref": second}])
    log = consumer.read_text()
    assert "skipped malformed change_batch_quantity message b'{nope'" in log
    assert "Unknown batch" in log
