"""Backorders, cancellation and availability against the real API, relay and consumer
processes on PostgreSQL and Redis: the HTTP answers, the read models after each 2xx,
and the messages the relay publishes."""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

import pytest
import redis
import requests

from tests.e2e.conftest import Service, unique
from tests.e2e.test_api import Subscriber, add_batch, allocate, without_envelope
from tests.waiting import wait_until

CHANNELS = (
    "line_allocated",
    "line_deallocated",
    "line_backordered",
    "out_of_stock",
    "sold_out",
    "back_in_stock",
)

Message = tuple[str, dict[str, Any]]


class Heard:
    """Every message on CHANNELS from the test's start, kept in arrival order (none
    discarded), so that a test can wait for one and then look at all of them."""

    def __init__(self, redis_url: str) -> None:
        self._subscriber = Subscriber(redis_url, *CHANNELS)
        self.messages: list[Message] = []
        self.listen(0.2)  # the SUBSCRIBE replies are read: the subscription is live

    def listen(self, seconds: float) -> None:
        """Keeps listening for ``seconds``: how a test shows that nothing more arrives."""
        self.messages.extend(self._subscriber.drain(seconds))

    def of(self, channel: str, **match: Any) -> list[dict[str, Any]]:
        return [
            payload
            for heard_on, payload in self.messages
            if heard_on == channel and all(payload.get(k) == v for k, v in match.items())
        ]

    def wait_for(
        self, channel: str, count: int = 1, timeout: float = 10, **match: Any
    ) -> list[dict[str, Any]]:
        """The first ``count`` messages on ``channel`` with ``match``'s items."""

        def enough() -> list[dict[str, Any]] | None:
            self.listen(0.1)
            found = self.of(channel, **match)
            return found[:count] if len(found) >= count else None

        return wait_until(
            f"{count} x {match} on {channel}",
            enough,
            timeout,
            interval=0,
            detail=lambda: f"heard: {self.messages[-20:]}",
        )

    def index(self, channel: str, **match: Any) -> int:
        """Where the one message on ``channel`` with ``match``'s items arrived."""
        found = [
            i
            for i, (heard_on, payload) in enumerate(self.messages)
            if heard_on == channel and all(payload.get(k) == v for k, v in match.items())
        ]
        assert len(found) == 1, (channel, match, self.messages)
        return found[0]

    def about(self, sku: str) -> list[Message]:
        return [(channel, payload) for channel, payload in self.messages if payload["sku"] == sku]

    def close(self) -> None:
        self._subscriber.close()


@pytest.fixture
def heard(redis_url: str, relay: Service) -> Iterator[Heard]:
    listener = Heard(redis_url)
    yield listener
    listener.close()


# -- the API, as a client calls it ------------------------------------------------------------


def get(api: Service, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{api.url}{path}", timeout=10, **kwargs)


def delete(api: Service, path: str) -> requests.Response:
    return requests.delete(f"{api.url}{path}", timeout=30)


def ok_json(response: requests.Response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json()


def order(api: Service, orderid: str) -> dict[str, Any]:
    return ok_json(get(api, f"/orders/{quote(orderid, safe='')}"))  # type: ignore[no-any-return]


def availability(api: Service, sku: str) -> dict[str, Any]:
    return ok_json(get(api, f"/availability/{quote(sku, safe='')}"))  # type: ignore[no-any-return]


def queue(api: Service, sku: str) -> list[dict[str, Any]]:
    return ok_json(get(api, f"/backorders/{quote(sku, safe='')}"))  # type: ignore[no-any-return]


def line(sku: str, qty: int, batchref: str | None = None, eta: str | None = None) -> dict[str, Any]:
    """A line of GET /orders: allocated to ``batchref``, or waiting without one."""
    status = "backordered" if batchref is None else "allocated"
    return {"sku": sku, "qty": qty, "status": status, "batchref": batchref, "eta": eta}


def waiting(api: Service, sku: str) -> list[tuple[str, int]]:
    return [(w["orderid"], w["qty"]) for w in queue(api, sku)]


def change_quantity(publisher: redis.Redis, ref: str, qty: int) -> None:
    """Sends the inbound message the consumer process applies."""
    payload = {"batchref": ref, "qty": qty, "message_id": unique("msg")}
    receivers = cast(int, publisher.publish("change_batch_quantity", json.dumps(payload)))
    assert receivers >= 1, "nobody listens on change_batch_quantity"


def envelope_ok(message: dict[str, Any]) -> None:
    assert len(message["message_id"]) == 36, message
    assert datetime.fromisoformat(message["occurred_at"]).utcoffset() == timedelta(0), message


# -- 1. every endpoint and message of the contract --------------------------------------------


def test_a_line_no_batch_can_take_waits_when_asked_to(api: Service, heard: Heard) -> None:
    sku, batch = unique("sku"), unique("batch")
    fits, waits = unique("order"), unique("order") + "/1 a"  # a `/` and a space to encode
    add_batch(api, batch, sku, 5)

    allocated = allocate(api, fits, sku, 3, backorder=True)
    assert allocated.status_code == 202, allocated.text
    assert allocated.json() == {"batchref": batch, "status": "allocated"}
    assert allocated.headers["Location"] == f"/allocations/{fits}"

    before = datetime.now(UTC)
    backordered = allocate(api, waits, sku, 5, backorder=True)
    after = datetime.now(UTC)

    assert backordered.status_code == 202, backordered.text
    assert backordered.json() == {"batchref": None, "status": "backordered"}
    location = backordered.headers["Location"]
    assert location == f"/orders/{waits.replace('/', '%2F').replace(' ', '%20')}"
    assert ok_json(get(api, location)) == {"orderid": waits, "lines": [line(sku, 5)]}
    assert get(api, f"/allocations/{quote(waits, safe='')}").status_code == 404
    [place] = queue(api, sku)
    assert (place["orderid"], place["qty"]) == (waits, 5)
    since = datetime.fromisoformat(place["since"])
    assert since.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= since <= after + timedelta(seconds=1)
    shown = availability(api, sku)
    assert (shown["available"], shown["in_stock"], shown["backordered"]) == (2, 2, 5)

    [out_of_stock] = heard.wait_for("out_of_stock", sku=sku)
    [message] = heard.wait_for("line_backordered", orderid=waits)
    assert without_envelope(out_of_stock) == {"sku": sku}
    assert without_envelope(message) == {"orderid": waits, "sku": sku, "qty": 5}
    envelope_ok(message)
    envelope_ok(out_of_stock)

    # The same waiting line again: the same answer, and nothing new anywhere.
    again = allocate(api, waits, sku, 5, backorder=True)
    assert again.status_code == 202, again.text
    assert again.json() == {"batchref": None, "status": "backordered"}
    assert again.headers["Location"] == location
    assert queue(api, sku) == [place]
    assert availability(api, sku) == shown
    # The same order and SKU with another quantity, waiting or allocated: a conflict.
    conflict = allocate(api, waits, sku, 4, backorder=True)
    assert conflict.status_code == 409, conflict.text
    assert allocate(api, fits, sku, 2, backorder=True).status_code == 409
    assert allocate(api, fits, sku, 3, backorder=True).json() == {
        "batchref": batch,
        "status": "allocated",
    }
    assert order(api, waits) == {"orderid": waits, "lines": [line(sku, 5)]}

    # Without `backorder` the old contract holds: 409, and no status in a 202.
    refused = allocate(api, unique("order"), sku, 3)
    assert refused.status_code == 409
    assert refused.json() == {"message": f"Out of stock for sku {sku}"}
    plain_id = unique("order")
    plain = allocate(api, plain_id, sku, 2)
    assert plain.status_code == 202
    assert plain.json() == {"batchref": batch}
    assert plain.headers["Location"] == f"/allocations/{plain_id}"
    unknown = allocate(api, unique("order"), unique("no-such-sku"), 1, backorder=True)
    assert unknown.status_code == 400, unknown.text

    heard.wait_for("out_of_stock", count=2, sku=sku)  # the refused line's
    heard.wait_for("line_allocated", orderid=plain_id)
    heard.listen(0.5)
    assert [c for c, p in heard.about(sku) if p.get("orderid") == waits] == ["line_backordered"]
    assert len(heard.of("out_of_stock", sku=sku)) == 2
    assert len(heard.of("line_allocated", orderid=fits)) == 1


def test_an_order_shows_its_lines_by_sku_and_is_cancelled_whole(api: Service, heard: Heard) -> None:
    base, orderid, batch = unique("sku"), unique("order"), unique("batch")
    first, second = f"{base}-a", f"{base}-b"
    add_batch(api, unique("batch"), first, 1)
    assert allocate(api, unique("order"), first, 1).status_code == 202
    add_batch(api, batch, second, 10, "2031-05-06")
    # Asked for in reverse SKU order: the view sorts them.
    assert allocate(api, orderid, second, 4, backorder=True).json()["status"] == "allocated"
    assert allocate(api, orderid, first, 2, backorder=True).json()["status"] == "backordered"

    assert order(api, orderid) == {
        "orderid": orderid,
        "lines": [line(first, 2), line(second, 4, batch, "2031-05-06")],
    }
    assert get(api, f"/orders/{unique('order')}").status_code == 404
    assert get(api, f"/backorders/{unique('no-such-sku')}").status_code == 404

    released = delete(api, f"/orders/{orderid}")

    assert released.status_code == 200, released.text
    assert sorted(released.json(), key=lambda r: r["sku"]) == [
        {"orderid": orderid, "sku": first, "qty": 2, "batchref": None},
        {"orderid": orderid, "sku": second, "qty": 4, "batchref": batch},
    ]
    assert get(api, f"/orders/{orderid}").status_code == 404
    assert get(api, f"/allocations/{orderid}").status_code == 404
    assert queue(api, first) == []
    assert availability(api, first)["backordered"] == 0
    assert availability(api, second)["available"] == 10
    [message] = heard.wait_for("line_deallocated", orderid=orderid)
    assert without_envelope(message) == {
        "orderid": orderid,
        "sku": second,
        "qty": 4,
        "batchref": batch,
        "reason": "cancelled",
    }
    envelope_ok(message)

    versions = (availability(api, first)["version"], availability(api, second)["version"])
    again = delete(api, f"/orders/{orderid}")
    assert again.status_code == 404, again.text
    assert delete(api, f"/allocations/{orderid}/{second}").status_code == 404
    assert (availability(api, first)["version"], availability(api, second)["version"]) == versions
    heard.listen(0.5)
    assert len(heard.of("line_deallocated", orderid=orderid)) == 1


def test_a_cancelled_line_is_released_and_never_allocated_again(api: Service, heard: Heard) -> None:
    sku, batch, orderid, waiter = unique("sku"), unique("batch"), unique("order"), unique("order")
    add_batch(api, batch, sku, 6)
    assert allocate(api, orderid, sku, 4).json() == {"batchref": batch}
    assert allocate(api, waiter, sku, 7, backorder=True).json()["status"] == "backordered"
    version = availability(api, sku)["version"]

    released = delete(api, f"/allocations/{orderid}/{sku}")

    assert released.status_code == 200, released.text
    assert released.json() == {"orderid": orderid, "sku": sku, "qty": 4, "batchref": batch}
    assert get(api, f"/allocations/{orderid}").status_code == 404
    assert get(api, f"/orders/{orderid}").status_code == 404
    shown = availability(api, sku)
    assert (shown["available"], shown["backordered"]) == (6, 7)  # 7 > 6: it still waits
    assert shown["version"] > version
    [message] = heard.wait_for("line_deallocated", orderid=orderid)
    assert without_envelope(message) == {
        "orderid": orderid,
        "sku": sku,
        "qty": 4,
        "batchref": batch,
        "reason": "cancelled",
    }
    # Cancelling the waiting line: released without a batch, and gone from the queue.
    waiting_released = delete(api, f"/allocations/{waiter}/{sku}")
    assert waiting_released.status_code == 200, waiting_released.text
    assert waiting_released.json() == {"orderid": waiter, "sku": sku, "qty": 7, "batchref": None}
    assert queue(api, sku) == []
    assert availability(api, sku)["backordered"] == 0

    # Nothing to release now: 404, and nothing changes.
    version = availability(api, sku)["version"]
    assert delete(api, f"/allocations/{orderid}/{sku}").status_code == 404
    assert delete(api, f"/allocations/{waiter}/{sku}").status_code == 404
    assert availability(api, sku)["version"] == version

    # New stock does not bring the cancelled lines back.
    add_batch(api, unique("batch"), sku, 20)
    assert get(api, f"/orders/{orderid}").status_code == 404
    assert get(api, f"/orders/{waiter}").status_code == 404
    assert availability(api, sku)["available"] == 26
    heard.listen(0.5)
    assert [c for c, p in heard.about(sku) if p.get("orderid") in (orderid, waiter)] == [
        "line_allocated",
        "line_backordered",
        "line_deallocated",
    ]


def test_availability_counts_free_units_now_and_incoming(api: Service) -> None:
    sku, other = unique("sku"), unique("sku")
    add_batch(api, unique("batch"), sku, 5)
    add_batch(api, unique("batch"), sku, 10, "2031-01-01")
    add_batch(api, unique("batch"), sku, 3, "2031-01-01")
    add_batch(api, unique("batch"), sku, 7, "2031-02-01")
    add_batch(api, unique("batch"), other, 4, "2032-03-04")
    assert allocate(api, unique("order"), sku, 3).status_code == 202  # from the warehouse
    assert allocate(api, unique("order"), sku, 5, backorder=False).status_code == 202
    waiter = unique("order")
    assert allocate(api, waiter, sku, 11, backorder=True).json()["status"] == "backordered"

    response = get(api, f"/availability/{sku}")

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "sku": sku,
        "version": body["version"],
        "available": 17,
        "in_stock": 2,
        "incoming": [{"eta": "2031-01-01", "qty": 8}, {"eta": "2031-02-01", "qty": 7}],
        "backordered": 11,
        "held": 0,
    }
    assert isinstance(body["version"], int)
    etag = response.headers["ETag"]
    assert etag == f'"v{body["version"]}"'
    # What N units would do now: the first batch (warehouse first) that holds N whole.
    promises = {qty: ok_json(get(api, f"/availability/{sku}?qty={qty}")) for qty in (2, 3, 5, 7, 8)}
    assert promises[2] == body | {"can_allocate": True, "eta": None}
    assert promises[3] == body | {"can_allocate": True, "eta": "2031-01-01"}
    assert promises[5] == body | {"can_allocate": True, "eta": "2031-01-01"}
    assert promises[7] == body | {"can_allocate": True, "eta": "2031-02-01"}
    assert promises[8] == body | {"can_allocate": False, "eta": None}  # 8 free: never split
    assert get(api, f"/availability/{sku}?qty=0").status_code == 400

    not_modified = get(api, f"/availability/{sku}", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["ETag"] == etag
    assert get(api, f"/availability/{sku}", headers={"If-None-Match": '"v0"'}).status_code == 200
    assert get(api, f"/availability/{unique('no-such-sku')}").status_code == 404

    assert allocate(api, unique("order"), sku, 2).status_code == 202  # a change: a new version
    changed = get(api, f"/availability/{sku}", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()["version"] > body["version"]
    assert changed.headers["ETag"] == f'"v{changed.json()["version"]}"'
    assert (changed.json()["available"], changed.json()["in_stock"]) == (15, 0)

    many = get(api, "/availability", params={"sku": [other, unique("no-such-sku"), sku]})
    assert many.status_code == 200
    other_shown = availability(api, other)
    assert other_shown == {
        "sku": other,
        "version": other_shown["version"],
        "available": 4,
        "in_stock": 0,
        "incoming": [{"eta": "2032-03-04", "qty": 4}],
        "backordered": 0,
        "held": 0,
    }
    assert many.json() == [other_shown, changed.json()]
    asked = ok_json(get(api, "/availability", params={"sku": [sku, other], "qty": 4}))
    assert [(a["sku"], a["can_allocate"], a["eta"]) for a in asked] == [
        (sku, True, "2031-01-01"),
        (other, True, "2032-03-04"),
    ]


# -- 2. new stock serves the queue oldest first -----------------------------------------------


def test_one_new_batch_fills_three_waiting_lines_oldest_first(api: Service, heard: Heard) -> None:
    sku, first_batch, batch = unique("sku"), unique("batch"), unique("batch")
    add_batch(api, first_batch, sku, 1)
    assert allocate(api, unique("order"), sku, 1).status_code == 202
    orders = [(unique("order"), qty) for qty in (3, 2, 4)]
    for orderid, qty in orders:
        assert allocate(api, orderid, sku, qty, backorder=True).json()["status"] == "backordered"
    places = queue(api, sku)
    assert [(w["orderid"], w["qty"]) for w in places] == orders
    assert sorted(places, key=lambda w: datetime.fromisoformat(w["since"])) == places

    add_batch(api, batch, sku, 9, "2031-07-08")

    for orderid, qty in orders:  # at once: the same transaction as the batch
        assert order(api, orderid) == {
            "orderid": orderid,
            "lines": [line(sku, qty, batch, "2031-07-08")],
        }
        assert ok_json(get(api, f"/allocations/{orderid}")) == [{"sku": sku, "batchref": batch}]
    assert queue(api, sku) == []
    shown = availability(api, sku)
    assert (shown["available"], shown["backordered"], shown["incoming"]) == (0, 0, [])
    heard.wait_for("line_allocated", count=3, batchref=batch)
    assert [without_envelope(m) for m in heard.of("line_allocated", batchref=batch)] == [
        {"orderid": orderid, "sku": sku, "qty": qty, "batchref": batch} for orderid, qty in orders
    ]


def test_a_line_that_does_not_fit_is_skipped_and_keeps_its_place(
    api: Service, heard: Heard
) -> None:
    sku = unique("sku")
    add_batch(api, unique("batch"), sku, 1)
    assert allocate(api, unique("order"), sku, 1).status_code == 202
    big, small, middle = unique("big"), unique("small"), unique("middle")
    for orderid, qty in ((big, 5), (small, 2), (middle, 3)):
        assert allocate(api, orderid, sku, qty, backorder=True).json()["status"] == "backordered"

    four = unique("batch")
    add_batch(api, four, sku, 4)  # big (5) cannot have it, small (2) can, then middle (3) cannot

    assert waiting(api, sku) == [(big, 5), (middle, 3)]
    assert order(api, small)["lines"] == [line(sku, 2, four)]
    six = unique("batch")
    add_batch(api, six, sku, 6)  # big is still first: it takes 5; 2 + 1 left, middle waits
    assert waiting(api, sku) == [(middle, 3)]
    assert order(api, big)["lines"] == [line(sku, 5, six)]
    assert availability(api, sku)["available"] == 3
    heard.wait_for("line_allocated", orderid=big)
    assert [p["orderid"] for p in heard.of("line_allocated", sku=sku)][-2:] == [small, big]


# -- 3. a cancellation fills the queue in its own transaction ---------------------------------


@pytest.mark.parametrize("whole_order", [False, True], ids=["line", "order"])
def test_a_cancellation_fills_a_waiting_line_in_the_same_transaction(
    api: Service, heard: Heard, whole_order: bool
) -> None:
    sku, batch, leaving, waiter = unique("sku"), unique("batch"), unique("order"), unique("order")
    add_batch(api, batch, sku, 5)
    assert allocate(api, leaving, sku, 5).json() == {"batchref": batch}
    assert allocate(api, waiter, sku, 3, backorder=True).json()["status"] == "backordered"
    assert get(api, f"/allocations/{waiter}").status_code == 404

    path = f"/orders/{leaving}" if whole_order else f"/allocations/{leaving}/{sku}"
    released = delete(api, path)

    assert released.status_code == 200, released.text
    release = {"orderid": leaving, "sku": sku, "qty": 5, "batchref": batch}
    assert released.json() == ([release] if whole_order else release)
    # No wait: the waiting line was allocated before the DELETE answered.
    assert ok_json(get(api, f"/allocations/{waiter}")) == [{"sku": sku, "batchref": batch}]
    assert order(api, waiter)["lines"] == [line(sku, 3, batch)]
    assert queue(api, sku) == []
    shown = availability(api, sku)
    assert (shown["available"], shown["backordered"]) == (2, 0)

    [freed] = heard.wait_for("line_deallocated", orderid=leaving)
    [filled] = heard.wait_for("line_allocated", orderid=waiter)
    assert without_envelope(freed) == release | {"reason": "cancelled"}
    assert without_envelope(filled) == {"orderid": waiter, "sku": sku, "qty": 3, "batchref": batch}
    assert heard.index("line_deallocated", orderid=leaving) < heard.index(
        "line_allocated", orderid=waiter
    )


# -- 4. a line displaced by a smaller batch waits, in its old place ---------------------------


def test_a_displaced_line_waits_in_its_place_and_is_filled_when_stock_returns(
    api: Service, consumer: Service, heard: Heard, publisher: redis.Redis
) -> None:
    sku, batch, displaced, later = unique("sku"), unique("batch"), unique("order"), unique("order")
    add_batch(api, batch, sku, 10)
    assert allocate(api, displaced, sku, 6).json() == {"batchref": batch}
    assert allocate(api, later, sku, 8, backorder=True).json()["status"] == "backordered"

    change_quantity(publisher, batch, 4)

    [freed] = heard.wait_for("line_deallocated", orderid=displaced)
    [waits] = heard.wait_for("line_backordered", orderid=displaced)
    assert without_envelope(freed) == {
        "orderid": displaced,
        "sku": sku,
        "qty": 6,
        "batchref": batch,
        "reason": "batch_reduced",
    }
    assert without_envelope(waits) == {"orderid": displaced, "sku": sku, "qty": 6}
    assert heard.index("line_deallocated", orderid=displaced) < heard.index(
        "line_backordered", orderid=displaced
    )
    # Accepted before `later`, it stands before it.
    assert waiting(api, sku) == [(displaced, 6), (later, 8)]
    assert order(api, displaced)["lines"] == [line(sku, 6)]
    assert get(api, f"/allocations/{displaced}").status_code == 404
    shown = availability(api, sku)
    assert (shown["available"], shown["backordered"]) == (4, 14)

    change_quantity(publisher, batch, 10)  # room for one of them: the older

    [filled] = heard.wait_for("line_allocated", orderid=displaced, batchref=batch)
    assert without_envelope(filled) == {
        "orderid": displaced,
        "sku": sku,
        "qty": 6,
        "batchref": batch,
    }
    assert order(api, displaced)["lines"] == [line(sku, 6, batch)]
    assert ok_json(get(api, f"/allocations/{displaced}")) == [{"sku": sku, "batchref": batch}]
    assert waiting(api, sku) == [(later, 8)]
    shown = availability(api, sku)
    assert (shown["available"], shown["backordered"]) == (4, 8)

    change_quantity(publisher, batch, 14)
    heard.wait_for("line_allocated", orderid=later, batchref=batch)
    assert queue(api, sku) == []
    assert order(api, later)["lines"] == [line(sku, 8, batch)]
    assert availability(api, sku)["available"] == 0
    heard.listen(0.5)
    assert [(c, p.get("orderid")) for c, p in heard.about(sku) if c != "out_of_stock"] == [
        ("back_in_stock", None),
        ("line_allocated", displaced),
        ("line_backordered", later),
        ("line_deallocated", displaced),
        ("line_backordered", displaced),
        ("line_allocated", displaced),
        ("line_allocated", later),
        ("sold_out", None),
    ]


# -- 5. many clients at once --------------------------------------------------------------------


@dataclass
class Client:
    """One thread's requests, and what the service answered it."""

    number: int
    api: Service
    sku: str
    batches: dict[str, int]
    qty: dict[str, int] = field(default_factory=dict)  # accepted lines, by order id
    backorder: dict[str, bool | None] = field(default_factory=dict)
    live: list[str] = field(default_factory=list)  # accepted and not cancelled
    cancelled: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    released_from: dict[str, str | None] = field(default_factory=dict)  # DELETE's batchref
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def run(self, requests_made: int) -> Client:
        rng = random.Random(self.number)
        with requests.Session() as session:
            for i in range(requests_made):
                roll = rng.random()
                if roll < 0.15 and self.live:
                    self._repeat(session, rng.choice(self.live))
                elif roll < 0.4 and self.live:
                    self._cancel(session, self.live.pop(rng.randrange(len(self.live))), rng)
                elif roll < 0.45 and self.cancelled:
                    self._cancel_again(session, rng.choice(self.cancelled))
                else:
                    orderid = f"{self.sku}-client{self.number}-{i}"
                    backorder = rng.choice([True, True, False, None])  # None: not sent
                    self._allocate(session, orderid, rng.randint(1, 3), backorder)
        return self

    def _call(
        self, session: requests.Session, method: str, path: str, **kwargs: Any
    ) -> requests.Response:
        response = session.request(method, f"{self.api.url}{path}", timeout=30, **kwargs)
        self.statuses[response.status_code] += 1
        return response

    def _expect(self, response: requests.Response, ok: bool, what: str) -> None:
        if not ok:
            self.problems.append(f"{what}: {response.status_code} {response.text.strip()}")

    def _allocate(
        self, session: requests.Session, orderid: str, qty: int, backorder: bool | None
    ) -> None:
        response = self._call(
            session, "POST", "/allocate", json=self._line(orderid, qty, backorder)
        )
        what = f"allocate {orderid} x{qty} backorder={backorder}"
        if response.status_code == 409 and not backorder:
            refusal = {"message": f"Out of stock for sku {self.sku}"}
            self._expect(response, response.json() == refusal, what)
            self.refused.append(orderid)
            return
        self._expect(response, response.status_code == 202, what)
        if response.status_code != 202:
            return
        answer = response.json()
        if backorder is None:  # the answer as before backorders
            expected_ok = answer in ({"batchref": ref} for ref in self.batches)
        else:  # asked about backorders, the answer says the status
            backordered = [{"batchref": None, "status": "backordered"}] if backorder else []
            allocated = [{"batchref": ref, "status": "allocated"} for ref in self.batches]
            expected_ok = answer in backordered + allocated
        self._expect(response, expected_ok, what)
        self.qty[orderid], self.backorder[orderid] = qty, backorder
        self.live.append(orderid)

    def _line(self, orderid: str, qty: int, backorder: bool | None) -> dict[str, Any]:
        body: dict[str, Any] = {"orderid": orderid, "sku": self.sku, "qty": qty}
        if backorder is not None:
            body["backorder"] = backorder
        return body

    def _repeat(self, session: requests.Session, orderid: str) -> None:
        body = self._line(orderid, self.qty[orderid], self.backorder[orderid])
        response = self._call(session, "POST", "/allocate", json=body)
        self._expect(response, response.status_code == 202, f"repeat {orderid}")

    def _cancel(self, session: requests.Session, orderid: str, rng: random.Random) -> None:
        whole = rng.random() < 0.5
        path = f"/orders/{orderid}" if whole else f"/allocations/{orderid}/{self.sku}"
        response = self._call(session, "DELETE", path)
        self._expect(response, response.status_code == 200, f"DELETE {path}")
        self.cancelled.append(orderid)
        if response.status_code != 200:
            return
        release = response.json()
        released = release if whole else [release]
        ok = (
            isinstance(released, list)
            and len(released) == 1
            and {k: released[0].get(k) for k in ("orderid", "sku", "qty")}
            == {"orderid": orderid, "sku": self.sku, "qty": self.qty[orderid]}
            and released[0].get("batchref") in (None, *self.batches)
        )
        self._expect(response, ok, f"DELETE {path}")
        if ok:
            self.released_from[orderid] = released[0]["batchref"]

    def _cancel_again(self, session: requests.Session, orderid: str) -> None:
        response = self._call(session, "DELETE", f"/allocations/{orderid}/{self.sku}")
        self._expect(response, response.status_code == 404, f"DELETE {orderid} again")


def test_concurrent_allocations_and_cancellations_never_oversell(
    api: Service, heard: Heard
) -> None:
    sku, warehouse, shipment = unique("sku"), unique("batch"), unique("batch")
    batches = {warehouse: 12, shipment: 18}
    add_batch(api, warehouse, sku, 12)
    add_batch(api, shipment, sku, 18, "2031-03-04")
    started = time.monotonic()

    with ThreadPoolExecutor(max_workers=16) as pool:
        clients = list(
            pool.map(lambda n: Client(n, api, sku, batches).run(25), range(16), timeout=60)
        )

    elapsed = time.monotonic() - started
    statuses = sum((c.statuses for c in clients), Counter[int]())
    assert sum(statuses.values()) == 16 * 25
    assert not [s for s in statuses if s >= 500], statuses
    assert [p for c in clients for p in c.problems] == [], statuses
    assert elapsed < 30, f"{elapsed:.1f}s for 400 requests"

    # Every line the clients still hold is allocated or waiting, exactly once.
    allocated: dict[str, int] = defaultdict(int)
    backordered: dict[str, int] = {}
    for client in clients:
        for orderid in client.live:
            [held] = order(api, orderid)["lines"]
            qty = client.qty[orderid]
            if held["status"] == "allocated":
                eta = None if held["batchref"] == warehouse else "2031-03-04"
                assert held == line(sku, qty, held["batchref"], eta), held
                assert held["batchref"] in batches
                allocated[held["batchref"]] += qty
            else:
                assert held == line(sku, qty), held
                backordered[orderid] = qty
        for orderid in client.cancelled + client.refused:
            assert get(api, f"/orders/{orderid}").status_code == 404, orderid
    assert sum(len(c.live) for c in clients) > 0
    assert sum(len(c.cancelled) for c in clients) > 0

    free = {ref: qty - allocated[ref] for ref, qty in batches.items()}
    assert min(free.values()) >= 0, f"oversold: {free}"
    shown = availability(api, sku)
    assert shown["available"] >= 0
    assert shown["available"] == sum(batches.values()) - sum(allocated.values())
    assert shown["in_stock"] == free[warehouse]
    incoming = [{"eta": "2031-03-04", "qty": free[shipment]}] if free[shipment] else []
    assert shown["incoming"] == incoming
    assert shown["backordered"] == sum(backordered.values())
    places = queue(api, sku)
    assert {w["orderid"]: w["qty"] for w in places} == backordered
    assert len(places) == len(backordered)
    assert sorted(places, key=lambda w: datetime.fromisoformat(w["since"])) == places
    # Stock that came free went to the queue: no waiting line fits in any batch.
    assert all(qty > max(free.values()) for qty in backordered.values()), (free, backordered)

    # What was published tells the same story: each line's last message is its state...
    expected: dict[str, tuple[str, str | None]] = {}
    for client in clients:
        for orderid in client.live:
            [held] = order(api, orderid)["lines"]
            last = "line_allocated" if held["batchref"] else "line_backordered"
            expected[orderid] = (last, held["batchref"])
        for orderid, batchref in client.released_from.items():
            expected[orderid] = (
                ("line_deallocated", batchref) if batchref else ("line_backordered", None)
            )
    refused = {orderid for client in clients for orderid in client.refused}

    def last_messages() -> dict[str, tuple[str, str | None]]:
        lines = [(c, p) for c, p in heard.about(sku) if "orderid" in p]
        return {p["orderid"]: (c, p.get("batchref")) for c, p in lines}

    def told() -> bool:
        heard.listen(0.2)
        return last_messages() == expected

    wait_until(
        "the messages to tell each line's state",
        told,
        timeout=15,
        detail=lambda: str({k: v for k, v in last_messages().items() if expected.get(k) != v}),
    )
    heard.listen(0.5)
    assert last_messages() == expected
    assert not refused & set(last_messages())
    assert {p["reason"] for p in heard.of("line_deallocated", sku=sku)} == {"cancelled"}
    # ... and sold out and back in stock alternate, ending with the state now.
    transitions = [
        (c, p.get("available")) for c, p in heard.about(sku) if c in ("sold_out", "back_in_stock")
    ]
    alternating = [("back_in_stock", "sold_out")[i % 2] for i in range(len(transitions))]
    assert [c for c, _ in transitions] == alternating, transitions
    assert transitions[0] == ("back_in_stock", 12)
    assert all((available or 0) > 0 for c, available in transitions if c == "back_in_stock")
    assert transitions[-1][0] == ("back_in_stock" if shown["available"] else "sold_out")


# -- 6. sold out and back in stock ------------------------------------------------------------


def test_sold_out_and_back_in_stock_are_announced_once_per_transition(
    api: Service, consumer: Service, heard: Heard, publisher: redis.Redis
) -> None:
    sku, first, second = unique("sku"), unique("batch"), unique("batch")
    big, small, waiter = unique("order"), unique("order"), unique("order")

    add_batch(api, first, sku, 4)  # a new SKU: 0 -> 4, back in stock
    assert allocate(api, big, sku, 3).status_code == 202  # 4 -> 1: nothing
    assert allocate(api, small, sku, 1).status_code == 202  # 1 -> 0: sold out
    assert allocate(api, small, sku, 1).status_code == 202  # the same line: nothing
    assert allocate(api, unique("order"), sku, 1).status_code == 409  # 0 -> 0
    assert allocate(api, waiter, sku, 2, backorder=True).status_code == 202  # 0 -> 0
    add_batch(api, second, sku, 1)  # 0 -> 1 (the waiter needs 2): back in stock
    assert allocate(api, unique("order"), sku, 1).status_code == 202  # 1 -> 0: sold out
    third = unique("batch")
    add_batch(api, third, sku, 2)  # all of it to the waiter: 0 -> 0, nothing
    assert order(api, waiter)["lines"] == [line(sku, 2, third)]
    assert delete(api, f"/allocations/{big}/{sku}").status_code == 200  # 0 -> 3: back in stock
    change_quantity(publisher, first, 2)  # 3 -> 1: nothing (small keeps its unit)
    wait_until("the batch to shrink", lambda: availability(api, sku)["available"] == 1)
    change_quantity(publisher, first, 1)  # 1 -> 0: sold out
    wait_until("the batch to shrink", lambda: availability(api, sku)["available"] == 0)
    assert delete(api, f"/orders/{small}").status_code == 200  # 0 -> 1: back in stock

    heard.wait_for("back_in_stock", count=4, sku=sku)
    heard.wait_for("sold_out", count=3, sku=sku)
    heard.listen(1.0)
    assert [without_envelope(m) for m in heard.of("back_in_stock", sku=sku)] == [
        {"sku": sku, "available": 4},
        {"sku": sku, "available": 1},
        {"sku": sku, "available": 3},
        {"sku": sku, "available": 1},
    ]
    assert [without_envelope(m) for m in heard.of("sold_out", sku=sku)] == [{"sku": sku}] * 3
    for message in heard.of("sold_out", sku=sku) + heard.of("back_in_stock", sku=sku):
        envelope_ok(message)
    transitions = [c for c, _ in heard.about(sku) if c in ("sold_out", "back_in_stock")]
    assert transitions == ["back_in_stock", "sold_out"] * 3 + ["back_in_stock"]
