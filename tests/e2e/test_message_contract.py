"""What the real processes publish on Redis is what the live /asyncapi.json describes."""

from __future__ import annotations

import json
from typing import Any

import redis
import requests
from jsonschema import Draft7Validator, FormatChecker

from tests.e2e.conftest import Service, unique
from tests.e2e.test_api import Subscriber, add_batch
from tests.message_contract import payload_schemas
from tests.waiting import wait_until


def described_payloads(api: Service) -> dict[str, Draft7Validator]:
    """Each published channel's payload schema, from the document the API serves."""
    spec = requests.get(f"{api.url}/asyncapi.json", timeout=10).json()
    return {
        channel: Draft7Validator(schema, format_checker=FormatChecker())
        for channel, schema in payload_schemas(spec)["published"].items()
    }


def post(api: Service, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{api.url}{path}", json=body, timeout=30)


def test_every_published_message_matches_its_description(api: Service, redis_url: str) -> None:
    validators = described_payloads(api)
    sku, orderid, waiting = unique("sku"), unique("order"), unique("waiting")
    subscriber = Subscriber(redis_url, *validators)
    streams = redis.Redis.from_url(redis_url)
    start = {channel: _last_entry(streams, channel) for channel in validators}
    try:
        add_batch(api, unique("batch"), sku, 2)  # back_in_stock
        assert post(api, "/allocate", {"orderid": orderid, "sku": sku, "qty": 2}).ok  # sold_out
        backordered = {"orderid": waiting, "sku": sku, "qty": 1, "backorder": True}
        assert post(api, "/allocate", backordered).ok  # out_of_stock, line_backordered
        # Cancelling frees 2: line_deallocated, line_allocated (the waiting line), back_in_stock.
        assert requests.delete(f"{api.url}/allocations/{orderid}/{sku}", timeout=30).ok
        hold = unique("cart")
        assert post(
            api, "/holds", {"holdid": hold, "sku": sku, "qty": 1}
        ).ok  # hold_placed, sold_out
        assert requests.delete(
            f"{api.url}/holds/{hold}", timeout=30
        ).ok  # hold_ended, back_in_stock
        late = unique("waiting")
        late_line = {"orderid": late, "sku": sku, "qty": 5, "backorder": True}
        assert post(api, "/allocate", late_line).ok  # out_of_stock, line_backordered
        assert requests.delete(f"{api.url}/orders/{late}", timeout=30).ok  # backorder_cancelled

        heard: dict[str, list[dict[str, Any]]] = {}

        def all_heard() -> bool:
            for channel, payload in subscriber.drain(0.2):
                if payload.get("sku") == sku:
                    heard.setdefault(channel, []).append(payload)
            return {channel: len(payloads) for channel, payloads in heard.items()} == expected

        twice = ("line_allocated", "sold_out", "out_of_stock", "line_backordered")
        expected = dict.fromkeys(validators, 1) | dict.fromkeys(twice, 2) | {"back_in_stock": 3}
        wait_until("every message", all_heard, timeout=15, detail=lambda: str(heard))
        for channel, payloads in heard.items():
            for payload in payloads:
                validators[channel].validate(payload)
        for channel in validators:  # the stream of the same name carries the same payloads
            entries = streams.xrange(channel, min=f"({start[channel]}")
            ours = [json.loads(e[b"data"]) for _id, e in entries]
            ours = [payload for payload in ours if payload.get("sku") == sku]
            assert ours == heard[channel], channel
    finally:
        subscriber.close()
        streams.close()


def _last_entry(client: redis.Redis, stream: str) -> str:
    """The id of the stream's last entry (0-0 for an empty or missing stream)."""
    last = client.xrevrange(stream, count=1)
    return last[0][0].decode() if last else "0-0"
