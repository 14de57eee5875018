"""The HTTP edge of holds and stock movements, on the fakes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from allocation.config import Settings
from allocation.entrypoints.api.app import create_app
from tests.conftest import FakeService


@pytest.fixture
def client(fake_service: FakeService) -> Iterator[FlaskClient]:
    app = create_app(Settings(max_request_bytes=4096), service=fake_service.api)
    client = app.test_client()
    added = client.post("/add_batch", json={"ref": "b1", "sku": "LAMP", "qty": 5})
    assert added.status_code == 201
    yield client


def place(client: FlaskClient, holdid: str = "h1", qty: int = 2, **more: object) -> TestResponse:
    return client.post("/holds", json={"holdid": holdid, "sku": "LAMP", "qty": qty, **more})


def test_a_hold_is_placed_read_extended_and_released(client: FlaskClient) -> None:
    placed = place(client, ttl_seconds=60)
    assert placed.status_code == 201
    assert placed.headers["Location"] == "/holds/h1"
    body = placed.get_json()
    assert {k: body[k] for k in ("holdid", "sku", "qty", "batchref", "status")} == {
        "holdid": "h1",
        "sku": "LAMP",
        "qty": 2,
        "batchref": "b1",
        "status": "active",
    }
    assert body["expires_at"].endswith("+00:00") and "orderid" not in body
    assert client.get("/holds/h1").get_json() == body
    assert client.get("/availability/LAMP").get_json()["held"] == 2

    extended = client.patch("/holds/h1", json={"ttl_seconds": 600})
    assert extended.status_code == 200
    assert extended.get_json()["expires_at"] > body["expires_at"]

    released = client.delete("/holds/h1")
    assert (released.status_code, released.get_json()["status"]) == (200, "released")
    assert client.delete("/holds/h1").status_code == 200  # again: nothing changes
    assert client.get("/availability/LAMP").get_json()["held"] == 0


def test_a_confirmed_hold_is_an_allocation(client: FlaskClient) -> None:
    place(client)

    confirmed = client.post("/holds/h1/confirm", json={"orderid": "o1"})

    assert (confirmed.status_code, confirmed.get_json()) == (202, {"batchref": "b1"})
    assert confirmed.headers["Location"] == "/allocations/o1"
    assert client.get("/allocations/o1").get_json() == [{"sku": "LAMP", "batchref": "b1"}]
    again = client.post("/holds/h1/confirm", json={"orderid": "o1"})
    assert (again.status_code, again.get_json()) == (202, {"batchref": "b1"})
    assert client.get("/holds/h1").get_json()["orderid"] == "o1"
    assert client.delete("/holds/h1").status_code == 409


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"holdid": "h/1", "sku": "LAMP", "qty": 1}, "holdid"),
        ({"holdid": "h1", "sku": "LAMP", "qty": 0}, "qty"),
        ({"holdid": "h1", "sku": "LAMP", "qty": 1, "ttl_seconds": 0}, "ttl_seconds"),
        ({"holdid": "h1", "sku": "LAMP", "qty": 1, "ttl_seconds": 86_401}, "ttl_seconds"),
        ({"holdid": "h1", "sku": "LAMP"}, "qty"),
    ],
)
def test_bad_input_is_a_400_that_names_it_and_writes_nothing(
    client: FlaskClient, fake_service: FakeService, body: dict[str, object], problem: str
) -> None:
    commits = fake_service.store.commits
    response = client.post("/holds", json=body)
    assert response.status_code == 400
    assert problem in response.get_json()["message"]
    assert fake_service.store.commits == commits


def test_refusals(client: FlaskClient) -> None:
    assert place(client, qty=9).status_code == 409
    assert place(client).status_code == 201
    assert place(client, qty=3).status_code == 409
    unknown_sku = client.post("/holds", json={"holdid": "h2", "sku": "NOPE", "qty": 1})
    assert unknown_sku.status_code == 400
    assert client.get("/holds/nope").status_code == 404
    assert client.patch("/holds/nope", json={"ttl_seconds": 5}).status_code == 404
    assert client.post("/holds/nope/confirm", json={"orderid": "o1"}).status_code == 404
    assert client.patch("/holds/h1", json={"ttl_seconds": "5"}).status_code == 400
    assert client.patch("/holds/h1", data="{}", content_type="text/plain").status_code == 415


def test_movements_page_by_page(client: FlaskClient) -> None:
    place(client)
    client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 1})

    first = client.get("/products/LAMP/movements?limit=2").get_json()
    rest = client.get(f"/products/LAMP/movements?after={first['next']}").get_json()

    assert [(m["seq"], m["kind"], m["qty"]) for m in first["movements"] + rest["movements"]] == [
        (1, "batch_added", 5),
        (2, "hold_placed", -2),
        (3, "allocated", -1),
    ]
    assert (first["sku"], first["next"], rest["next"]) == ("LAMP", 2, None)
    placed = first["movements"][1]
    assert placed["holdid"] == "h1" and "orderid" not in placed
    assert set(placed["source"]) == {"request_id"}
    assert client.get("/products/NOPE/movements").status_code == 404
    for bad in ("limit=0", "limit=1001", "after=-1", "after=x"):
        assert client.get(f"/products/LAMP/movements?{bad}").status_code == 400, bad


def test_every_hold_write_needs_the_bearer_token(fake_service: FakeService) -> None:
    guarded = create_app(Settings(api_token="s3cret"), service=fake_service.api).test_client()
    token = {"Authorization": "Bearer s3cret"}
    add = {"ref": "b1", "sku": "LAMP", "qty": 5}
    assert guarded.post("/add_batch", json=add, headers=token).status_code == 201
    writes = [
        ("post", "/holds", {"holdid": "h1", "sku": "LAMP", "qty": 1}, 201),
        ("patch", "/holds/h1", {"ttl_seconds": 60}, 200),
        ("post", "/holds/h1/confirm", {"orderid": "o1"}, 202),
        ("delete", "/holds/h1", None, 409),  # confirmed: but only once past the token
    ]
    for method, path, body, status in writes:
        send = getattr(guarded, method)
        assert send(path, json=body).status_code == 401, path
        assert send(path, json=body, headers=token).status_code == status, path
    assert guarded.get("/holds/h1").status_code == 200  # reads stay open
