"""The HTTP contract against the real API process on PostgreSQL and Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests

from tests.e2e.conftest import Service, unique
from tests.waiting import wait_until


class Subscriber:
    """Listens on Redis channels from before the action under test."""

    def __init__(self, url: str, *channels: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(*channels)

    def wait_for(self, channel: str, match: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """The first message on ``channel`` whose payload has ``match``'s items."""

        def matching() -> dict[str, Any] | None:
            message = self._pubsub.get_message(timeout=0.2)  # itself waits for the next one
            if message is None or message["channel"].decode() != channel:
                return None
            payload: dict[str, Any] = json.loads(message["data"])
            return payload if all(payload.get(k) == v for k, v in match.items()) else None

        return wait_until(f"{match} on {channel}", matching, timeout, interval=0)

    def drain(self, seconds: float = 0.5) -> list[tuple[str, dict[str, Any]]]:
        """Everything heard in the next ``seconds`` (listening for a while, not a wait)."""
        seen = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._pubsub.get_message(timeout=0.1)
            if message is not None:
                seen.append((message["channel"].decode(), json.loads(message["data"])))
        return seen

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()


def without_envelope(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k not in ("message_id", "occurred_at")}


@pytest.fixture
def subscriber(redis_url: str) -> Iterator[Subscriber]:
    sub = Subscriber(redis_url, "line_allocated", "out_of_stock")
    yield sub
    sub.close()


def add_batch(api: Service, ref: str, sku: str, qty: int, eta: str | None = None) -> None:
    response = requests.post(
        f"{api.url}/add_batch", json={"ref": ref, "sku": sku, "qty": qty, "eta": eta}, timeout=10
    )
    assert response.status_code == 201, response.text


def allocate(
    api: Service, orderid: str, sku: str, qty: int, backorder: bool | None = None
) -> requests.Response:
    """POST /allocate; ``backorder`` is sent only when given."""
    body: dict[str, Any] = {"orderid": orderid, "sku": sku, "qty": qty}
    if backorder is not None:
        body["backorder"] = backorder
    return requests.post(f"{api.url}/allocate", json=body, timeout=30)


def test_happy_path_allocates_to_the_earliest_batch_and_publishes(
    api: Service, subscriber: Subscriber
) -> None:
    sku, other_sku = unique("sku"), unique("other")
    early, later, other = unique("early"), unique("later"), unique("other")
    orderid = unique("order")
    add_batch(api, later, sku, 100, "2031-01-02")
    add_batch(api, early, sku, 100, "2031-01-01")
    add_batch(api, other, other_sku, 100, None)

    response = allocate(api, orderid, sku, 3)

    assert response.status_code == 202
    assert response.headers["Location"] == f"/allocations/{orderid}"
    view = requests.get(f"{api.url}{response.headers['Location']}", timeout=10)
    assert view.status_code == 200
    assert view.json() == [{"sku": sku, "batchref": early}]
    message = subscriber.wait_for("line_allocated", {"orderid": orderid})
    assert without_envelope(message) == {
        "orderid": orderid,
        "sku": sku,
        "qty": 3,
        "batchref": early,
    }
    assert len(message["message_id"]) == 36
    assert message["occurred_at"].endswith("+00:00")


def test_unknown_sku_is_400(api: Service) -> None:
    orderid = unique("order")
    response = allocate(api, orderid, "NO-SUCH-SKU", 1)
    assert response.status_code == 400
    assert response.json() == {"message": "Invalid sku NO-SUCH-SKU"}
    assert requests.get(f"{api.url}/allocations/{orderid}", timeout=10).status_code == 404


def test_out_of_stock_is_409_and_published(api: Service, subscriber: Subscriber) -> None:
    sku = unique("sku")
    add_batch(api, unique("batch"), sku, 5)
    response = allocate(api, unique("order"), sku, 6)
    assert response.status_code == 409
    assert response.json() == {"message": f"Out of stock for sku {sku}"}
    assert without_envelope(subscriber.wait_for("out_of_stock", {"sku": sku})) == {"sku": sku}


def test_repeating_an_allocation_changes_nothing(api: Service, subscriber: Subscriber) -> None:
    sku, batch, orderid = unique("sku"), unique("batch"), unique("order")
    add_batch(api, batch, sku, 10)
    assert allocate(api, orderid, sku, 4).status_code == 202
    subscriber.wait_for("line_allocated", {"orderid": orderid})

    again = allocate(api, orderid, sku, 4)

    assert again.status_code == 202
    assert again.json() == {"batchref": batch}
    assert [m for m in subscriber.drain() if m[1].get("orderid") == orderid] == []
    assert requests.get(f"{api.url}/allocations/{orderid}", timeout=10).json() == [
        {"sku": sku, "batchref": batch}
    ]
    # Only 6 left: the repeat did not take a second 4.
    assert allocate(api, unique("order"), sku, 6).status_code == 202
    assert allocate(api, unique("order"), sku, 1).status_code == 409


def test_a_duplicate_batch_reference_is_409(api: Service) -> None:
    ref = unique("batch")
    add_batch(api, ref, unique("sku"), 10)
    response = requests.post(
        f"{api.url}/add_batch", json={"ref": ref, "sku": unique("sku"), "qty": 1}, timeout=10
    )
    assert response.status_code == 409
    assert ref in response.json()["message"]


@pytest.mark.parametrize(
    ("path", "data", "status"),
    [
        ("/allocate", b"{not json", 400),
        ("/allocate", b"", 400),
        ("/allocate", b'{"orderid": "o", "sku": "s"}', 400),
        ("/allocate", b'{"orderid": "o", "sku": "s", "qty": "two"}', 400),
        ("/allocate", b'{"orderid": "o", "sku": "s", "qty": -1}', 400),
        ("/allocate", b'{"orderid": "o\\u0000", "sku": "s", "qty": 1}', 400),
        ("/allocate", b'{"orderid": "\\ud800", "sku": "s", "qty": 1}', 400),
        ("/add_batch", b'{"ref": "r", "sku": "s", "qty": 1, "eta": "someday"}', 400),
        ("/add_batch", b'{"ref": "r", "sku": "s", "qty": 1, "eta": "2024-13-01"}', 400),
        ("/add_batch", json.dumps({"ref": "r" * 300, "sku": "s", "qty": 1}).encode(), 400),
        ("/add_batch", b'{"ref": "r", "sku": "s", "qty": 1, "pad": "' + b"x" * 70_000 + b'"}', 413),
    ],
)
def test_bad_input_gets_a_json_4xx_and_writes_nothing(
    api: Service, path: str, data: bytes, status: int
) -> None:
    response = requests.post(
        f"{api.url}{path}", data=data, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == status, response.text
    assert set(response.json()) == {"message"}
    assert "Traceback" not in response.text
    assert requests.get(f"{api.url}/allocations/o", timeout=10).status_code == 404


def test_sixteen_threads_cannot_oversell_one_sku(api: Service) -> None:
    sku = unique("hot")
    add_batch(api, unique("batch"), sku, 50)
    orderids = [unique("order") for _ in range(100)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda o: allocate(api, o, sku, 1).status_code, orderids))

    assert statuses.count(202) == 50, statuses
    assert statuses.count(409) == 50, statuses
    allocated = [
        o
        for o in orderids
        if requests.get(f"{api.url}/allocations/{o}", timeout=10).status_code == 200
    ]
    assert len(allocated) == 50
