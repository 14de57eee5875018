"""Holds and stock movements against the real API, relay, consumer and two hold-expiry
workers on PostgreSQL and Redis: every endpoint and message, expiry within two
seconds and exactly once, and sixteen clients racing on one SKU."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import Engine, create_engine, text

from tests.e2e.conftest import Service, run_cli, unique
from tests.e2e.test_api import add_batch, allocate
from tests.e2e.test_backorders import change_quantity, ok_json
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def hold_expirers(
    e2e_environment: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Service]]:
    """Two hold-expiry workers, as `allocation run` and compose would run them twice."""
    workers = []
    try:
        for n in range(2):
            log = tmp_path_factory.mktemp(f"expiry{n}") / "hold-expiry.log"
            env = {**e2e_environment, "HOLD_EXPIRY_POLL_MS": "200"}
            workers.append(Service(["hold-expiry"], env, log).start(ready="expiring holds"))
        yield workers
    finally:
        for worker in workers:
            assert worker.stop() == 0, worker.tail()


@pytest.fixture(scope="module")
def database(e2e_environment: dict[str, str]) -> Iterator[Engine]:
    engine = create_engine(e2e_environment["DATABASE_URL"])
    yield engine
    engine.dispose()


@dataclass
class Streams:
    """What the relay appended to the outbound streams: every message, none lost."""

    client: redis.Redis

    def of(self, channel: str, **match: Any) -> list[dict[str, Any]]:
        entries = self.client.xrange(channel)
        payloads = [json.loads(fields[b"data"]) for _id, fields in entries]  # type: ignore[union-attr]
        return [p for p in payloads if all(p.get(k) == v for k, v in match.items())]

    def wait_for(self, channel: str, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        return wait_until(
            f"{count} x {match} in the {channel} stream",
            lambda: found if len(found := self.of(channel, **match)) >= count else None,
            timeout=10,
        )


@pytest.fixture
def streams(redis_url: str, relay: Service) -> Iterator[Streams]:
    client = redis.Redis.from_url(redis_url)
    yield Streams(client)
    client.close()


def place(
    api: Service, holdid: str, sku: str, qty: int, ttl: int | None = None
) -> requests.Response:
    body: dict[str, Any] = {"holdid": holdid, "sku": sku, "qty": qty}
    if ttl is not None:
        body["ttl_seconds"] = ttl
    return requests.post(f"{api.url}/holds", json=body, timeout=30)


def call(api: Service, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{api.url}{path}", timeout=30, **kwargs)


def movements(api: Service, sku: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = ok_json(call(api, "GET", f"/products/{sku}/movements?after={after}&limit=50"))
        found += page["movements"]
        after = page["next"]
    return found


def available(api: Service, sku: str) -> dict[str, Any]:
    return ok_json(call(api, "GET", f"/availability/{sku}"))  # type: ignore[no-any-return]


def test_a_hold_is_placed_extended_and_confirmed_as_an_allocation(
    api: Service, streams: Streams
) -> None:
    sku, batch, holdid, orderid = unique("sku"), unique("batch"), unique("cart"), unique("order")
    add_batch(api, batch, sku, 5)

    placed = place(api, holdid, sku, 2, ttl=60)
    assert placed.status_code == 201, placed.text
    assert placed.headers["Location"] == f"/holds/{holdid}"
    hold = placed.json()
    assert {k: v for k, v in hold.items() if k != "expires_at"} == {
        "holdid": holdid,
        "sku": sku,
        "qty": 2,
        "batchref": batch,
        "status": "active",
    }
    assert datetime.fromisoformat(hold["expires_at"]).utcoffset() is not None
    assert ok_json(call(api, "GET", f"/holds/{holdid}")) == hold
    assert place(api, holdid, sku, 2, ttl=600).json() == hold  # repeated: unchanged
    assert (available(api, sku)["available"], available(api, sku)["held"]) == (3, 2)
    extended = ok_json(call(api, "PATCH", f"/holds/{holdid}", json={"ttl_seconds": 120}))
    assert extended["expires_at"] > hold["expires_at"]

    confirmed = call(api, "POST", f"/holds/{holdid}/confirm", json={"orderid": orderid})

    assert (confirmed.status_code, confirmed.json()) == (202, {"batchref": batch})
    assert confirmed.headers["Location"] == f"/allocations/{orderid}"
    assert ok_json(call(api, "GET", f"/allocations/{orderid}")) == [{"sku": sku, "batchref": batch}]
    [line] = ok_json(call(api, "GET", f"/orders/{orderid}"))["lines"]
    assert (line["status"], line["qty"]) == ("allocated", 2)
    assert ok_json(call(api, "GET", f"/holds/{holdid}"))["status"] == "confirmed"
    again = call(api, "POST", f"/holds/{holdid}/confirm", json={"orderid": orderid})
    assert (again.status_code, again.json()) == (202, {"batchref": batch})
    assert (available(api, sku)["available"], available(api, sku)["held"]) == (3, 0)
    [hold_placed] = streams.wait_for("hold_placed", holdid=holdid)
    assert hold_placed["expires_at"] == hold["expires_at"] and hold_placed["batchref"] == batch
    [ended] = streams.wait_for("hold_ended", holdid=holdid)
    assert (ended["reason"], ended["orderid"], ended["qty"]) == ("confirmed", orderid, 2)
    [allocated] = streams.wait_for("line_allocated", orderid=orderid)
    assert allocated["batchref"] == batch
    kinds = [(m["kind"], m["qty"], m.get("holdid"), m.get("orderid")) for m in movements(api, sku)]
    assert kinds == [
        ("batch_added", 5, None, None),
        ("hold_placed", -2, holdid, None),
        ("hold_ended", 2, holdid, orderid),
        ("allocated", -2, holdid, orderid),
    ]


def test_a_movement_names_the_request_that_made_it(api: Service) -> None:
    sku, batch = unique("sku"), unique("batch")
    response = requests.post(
        f"{api.url}/add_batch",
        json={"ref": batch, "sku": sku, "qty": 3},
        headers={"X-Request-ID": "req-movement-1"},
        timeout=10,
    )
    assert response.status_code == 201
    [added] = movements(api, sku)
    assert added["source"] == {"request_id": "req-movement-1"}
    assert (added["seq"], added["version"], added["reason"]) == (1, 1, "new_batch")


def test_a_release_gives_the_units_to_the_waiting_lines_oldest_first(
    api: Service, streams: Streams
) -> None:
    sku, batch, holdid = unique("sku"), unique("batch"), unique("cart")
    first, second = unique("order"), unique("order")
    add_batch(api, batch, sku, 4)
    assert place(api, holdid, sku, 4).status_code == 201
    assert allocate(api, first, sku, 3, backorder=True).json()["status"] == "backordered"
    assert allocate(api, second, sku, 3, backorder=True).json()["status"] == "backordered"

    released = ok_json(call(api, "DELETE", f"/holds/{holdid}"))

    assert released["status"] == "released"
    assert ok_json(call(api, "GET", f"/orders/{first}"))["lines"][0]["status"] == "allocated"
    assert ok_json(call(api, "GET", f"/orders/{second}"))["lines"][0]["status"] == "backordered"
    assert ok_json(call(api, "DELETE", f"/holds/{holdid}"))["status"] == "released"  # again
    [ended] = streams.wait_for("hold_ended", holdid=holdid)
    assert ended["reason"] == "released" and "orderid" not in ended
    assert call(api, "PATCH", f"/holds/{holdid}", json={"ttl_seconds": 9}).status_code == 409
    confirm = call(api, "POST", f"/holds/{holdid}/confirm", json={"orderid": unique("o")})
    assert confirm.status_code == 409
    assert call(api, "DELETE", f"/orders/{second}").status_code == 200
    [cancelled] = streams.wait_for("backorder_cancelled", orderid=second)
    assert (cancelled["sku"], cancelled["qty"]) == (sku, 3)


def test_refusals_are_json_and_change_nothing(api: Service, streams: Streams) -> None:
    sku, batch, holdid = unique("sku"), unique("batch"), unique("cart")
    add_batch(api, batch, sku, 2)
    version = available(api, sku)["version"]

    too_many = place(api, holdid, sku, 3)
    assert too_many.status_code == 409
    assert too_many.json() == {"message": f"Out of stock for sku {sku}"}
    streams.wait_for("out_of_stock", sku=sku)
    assert call(api, "GET", f"/holds/{holdid}").status_code == 404
    assert place(api, holdid, sku, 1).status_code == 201
    assert place(api, holdid, sku, 2).status_code == 409
    assert place(api, holdid, unique("other-sku"), 1).status_code == 409
    assert place(api, unique("cart"), unique("no-such-sku"), 1).status_code == 400
    assert place(api, "cart/1", sku, 1).status_code == 400
    assert place(api, unique("cart"), sku, 1, ttl=86_401).status_code == 400
    assert call(api, "PATCH", f"/holds/{holdid}", data="{}").status_code == 415
    assert call(api, "GET", f"/products/{unique('no-such-sku')}/movements").status_code == 404
    assert call(api, "GET", f"/products/{sku}/movements?limit=1001").status_code == 400
    assert available(api, sku)["version"] == version + 1  # only the one hold placed


def test_a_hold_expires_within_two_seconds_exactly_once(
    api: Service, streams: Streams, hold_expirers: list[Service]
) -> None:
    sku, batch = unique("sku"), unique("batch")
    add_batch(api, batch, sku, 10)
    holds = [unique("cart") for _ in range(4)]
    expires_at = []
    for holdid in holds:
        response = place(api, holdid, sku, 2, ttl=1)
        assert response.status_code == 201
        expires_at.append(datetime.fromisoformat(response.json()["expires_at"]))
    waiting = unique("order")
    assert allocate(api, waiting, sku, 5, backorder=True).json()["status"] == "backordered"
    assert available(api, sku)["held"] == 8

    wait_until("every hold expired", lambda: available(api, sku)["held"] == 0, timeout=10)

    done = time.time()
    assert done - max(e.timestamp() for e in expires_at) < 2.5  # 2 s, and this poll's own
    for holdid in holds:
        assert ok_json(call(api, "GET", f"/holds/{holdid}"))["status"] == "expired"
        confirm = call(api, "POST", f"/holds/{holdid}/confirm", json={"orderid": unique("o")})
        assert confirm.status_code == 409
    assert ok_json(call(api, "GET", f"/orders/{waiting}"))["lines"][0]["status"] == "allocated"
    streams.wait_for("hold_ended", count=4, sku=sku, reason="expired")
    time.sleep(0.5)  # two workers: a second expiry of any of them would show by now
    assert sorted(m["holdid"] for m in streams.of("hold_ended", sku=sku)) == sorted(holds)
    ended = [m for m in movements(api, sku) if m["kind"] == "hold_ended"]
    assert [m["source"] for m in ended] == [{"expiry": True}] * 4
    assert sum(m["qty"] for m in movements(api, sku)) == available(api, sku)["available"]


def test_a_hold_gives_way_when_its_batch_shrinks(
    api: Service, streams: Streams, consumer: Service, publisher: redis.Redis
) -> None:
    sku, stock, ship = unique("sku"), unique("batch"), unique("batch")
    moved, ended, orderid = unique("cart"), unique("cart"), unique("order")
    add_batch(api, stock, sku, 6)
    add_batch(api, ship, sku, 3, "2031-05-06")
    assert allocate(api, orderid, sku, 2).status_code == 202
    assert place(api, ended, sku, 1).json()["batchref"] == stock
    assert place(api, moved, sku, 3).json()["batchref"] == stock  # placed last: goes first

    change_quantity(publisher, stock, 1)  # 2 allocated, 4 held: both holds must go first

    streams.wait_for("hold_ended", holdid=ended, reason="batch_reduced")
    assert ok_json(call(api, "GET", f"/holds/{moved}"))["batchref"] == ship
    assert ok_json(call(api, "GET", f"/holds/{ended}"))["status"] == "released"
    [line] = ok_json(call(api, "GET", f"/orders/{orderid}"))["lines"]
    assert line["status"] == "backordered"  # the line left only once no hold was left
    changed = [m for m in movements(api, sku) if m["kind"] == "batch_changed"]
    assert len(changed) == 1 and set(changed[0]["source"]) == {"message_id"}


def test_check_movements_says_when_the_ledger_disagrees(
    api: Service, e2e_environment: dict[str, str], database: Engine
) -> None:
    sku, batch = unique("sku"), unique("batch")
    add_batch(api, batch, sku, 5)
    assert place(api, unique("cart"), sku, 2).status_code == 201

    assert run_cli("check-movements", "--sku", sku, env=e2e_environment).returncode == 0
    with database.begin() as connection:
        connection.execute(
            text("UPDATE batches SET purchased_quantity = 9 WHERE reference = :ref"), {"ref": batch}
        )
    try:
        disagreeing = run_cli("check-movements", env=e2e_environment)
        assert disagreeing.returncode == 1
        assert f"{sku}: movements add up to 3, available is 7" in disagreeing.stdout
    finally:
        with database.begin() as connection:
            connection.execute(
                text("UPDATE batches SET purchased_quantity = 5 WHERE reference = :ref"),
                {"ref": batch},
            )
    unknown = run_cli("check-movements", "--sku", unique("no-such-sku"), env=e2e_environment)
    assert unknown.returncode == 1 and "unknown SKU" in unknown.stderr


# -- sixteen clients on one SKU -----------------------------------------------------------------


@dataclass
class Shopper:
    """One of the racing clients: places, releases, confirms and lets holds expire, and
    allocates and cancels lines; remembers what it was told."""

    n: int
    api: Service
    sku: str
    holds: dict[str, int] = field(default_factory=dict)  # holdid -> qty, every placed one
    meant: dict[str, str] = field(default_factory=dict)  # holdid -> the end it was given
    orders: dict[str, str] = field(default_factory=dict)  # orderid -> what became of it
    statuses: Counter[int] = field(default_factory=Counter)

    def run(self, steps: int) -> Shopper:
        chance = random.Random(self.n)
        for step in range(steps):
            if chance.random() < 0.6:
                self._hold(f"s{self.n}-h{step}", chance)
            else:
                self._order(f"s{self.n}-o{step}", chance)
        return self

    def _status(self, response: requests.Response) -> int:
        self.statuses[response.status_code] += 1
        return response.status_code

    def _hold(self, holdid: str, chance: random.Random) -> None:
        qty = chance.randint(1, 3)
        if self._status(place(self.api, holdid, self.sku, qty, ttl=1)) != 201:
            return
        self.holds[holdid] = qty
        end = chance.choice(["release", "confirm", "expire"])
        if end == "release" and self._status(call(self.api, "DELETE", f"/holds/{holdid}")) == 200:
            self.meant[holdid] = "released"
        elif end == "confirm":
            body = {"orderid": f"{holdid}-order"}
            if self._status(call(self.api, "POST", f"/holds/{holdid}/confirm", json=body)) == 202:
                self.meant[holdid] = "confirmed"
                self.orders[f"{holdid}-order"] = "allocated"

    def _order(self, orderid: str, chance: random.Random) -> None:
        response = allocate(self.api, orderid, self.sku, chance.randint(1, 4), backorder=True)
        if self._status(response) != 202:
            return
        self.orders[orderid] = "live"
        if (
            chance.random() < 0.3
            and self._status(call(self.api, "DELETE", f"/orders/{orderid}")) == 200
        ):
            self.orders[orderid] = "released"


def test_sixteen_clients_racing_on_one_sku_leave_every_unit_accounted_for(
    api: Service, e2e_environment: dict[str, str], database: Engine, hold_expirers: list[Service]
) -> None:
    sku, stock, ship = unique("sku"), unique("batch"), unique("batch")
    add_batch(api, stock, sku, 20)
    add_batch(api, ship, sku, 10, "2031-07-08")

    with ThreadPoolExecutor(max_workers=16) as pool:
        shoppers = list(pool.map(lambda n: Shopper(n, api, sku).run(12), range(16), timeout=90))

    statuses = sum((s.statuses for s in shoppers), Counter[int]())
    assert not [code for code in statuses if code >= 500], statuses
    holds = {holdid: qty for s in shoppers for holdid, qty in s.holds.items()}
    wait_until(
        "every hold to have ended",
        lambda: _hold_states(database, sku).get("active", 0) == 0,
        timeout=10,
    )
    states = _hold_rows(database, sku)
    assert set(states) == set(holds)
    assert {"confirmed", "released", "expired"} <= set(states.values()), Counter(states.values())
    assert statuses[409] > 0, statuses  # the stock ran out: the clients really competed
    for shopper in shoppers:
        for holdid, meant in shopper.meant.items():
            assert states[holdid] == meant, holdid
        for holdid in set(shopper.holds) - set(shopper.meant):
            assert states[holdid] in ("expired", "released"), holdid  # released: batch never shrank
    _assert_lines_in_one_state(database, sku, shoppers)
    _assert_stock_agrees(api, database, sku)
    check = run_cli("check-movements", "--sku", sku, env=e2e_environment)
    assert check.returncode == 0, check.stdout + check.stderr


def _hold_rows(database: Engine, sku: str) -> dict[str, str]:
    with database.connect() as connection:
        rows = connection.execute(
            text("SELECT holdid, status FROM holds WHERE sku = :sku"), {"sku": sku}
        )
        return {str(holdid): str(status) for holdid, status in rows}


def _hold_states(database: Engine, sku: str) -> Counter[str]:
    return Counter(_hold_rows(database, sku).values())


def _assert_lines_in_one_state(database: Engine, sku: str, shoppers: list[Shopper]) -> None:
    with database.connect() as connection:
        allocated = {
            r[0]
            for r in connection.execute(
                text("SELECT orderid FROM allocations WHERE sku = :s"), {"s": sku}
            )
        }
        waiting = {
            r[0]
            for r in connection.execute(
                text("SELECT orderid FROM backorders WHERE sku = :s"), {"s": sku}
            )
        }
    assert not allocated & waiting
    for shopper in shoppers:
        for orderid, state in shopper.orders.items():
            if state == "released":
                assert orderid not in allocated | waiting, orderid
            else:
                assert orderid in allocated | waiting, orderid
            if state == "allocated":  # a confirmed hold
                assert orderid in allocated, orderid


def _assert_stock_agrees(api: Service, database: Engine, sku: str) -> None:
    with database.connect() as connection:
        batches = connection.execute(
            text(
                "SELECT b.reference, b.purchased_quantity, b.allocated_quantity, b.held_quantity,"
                " COALESCE((SELECT SUM(qty) FROM allocations a WHERE a.batch_id = b.id), 0),"
                " COALESCE((SELECT SUM(qty) FROM holds h WHERE h.batchref = b.reference"
                "  AND h.status = 'active'), 0)"
                " FROM batches b WHERE b.sku = :sku"
            ),
            {"sku": sku},
        ).all()
    free = 0
    for ref, purchased, allocated, held, lines, holds in batches:
        assert (allocated, held) == (lines, holds), ref
        assert purchased - allocated - held >= 0, f"{ref} oversold"
        free += purchased - allocated - held
    shown = available(api, sku)
    assert (shown["available"], shown["held"]) == (free, 0)
    assert sum(m["qty"] for m in movements(api, sku)) == free
