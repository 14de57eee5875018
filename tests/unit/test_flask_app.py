"""The HTTP edge with a fake bus: status codes, bodies and input validation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from allocation import bootstrap
from allocation.config import Settings
from allocation.entrypoints.flask_app import create_app
from tests.conftest import FakeService
from tests.fakes import FakeNotifications


@pytest.fixture
def client(fake_service: FakeService) -> Iterator[FlaskClient]:
    app = create_app(Settings(max_request_bytes=4096), service=fake_service.api)
    yield app.test_client()


def add_batch(client: FlaskClient, ref: str, sku: str, qty: int, eta: str | None = None) -> None:
    response = client.post("/add_batch", json={"ref": ref, "sku": sku, "qty": qty, "eta": eta})
    assert response.status_code == 201, response.get_json()


def test_allocate_returns_202_with_location_and_the_view_shows_it(client: FlaskClient) -> None:
    add_batch(client, "b-early", "LAMP", 10, "2030-01-01")
    add_batch(client, "b-late", "LAMP", 10, "2030-02-01")

    response = client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 3})

    assert response.status_code == 202
    assert response.headers["Location"] == "/allocations/o1"
    assert response.get_json() == {"batchref": "b-early"}
    view = client.get("/allocations/o1")
    assert view.status_code == 200
    assert view.get_json() == [{"sku": "LAMP", "batchref": "b-early"}]


def test_unknown_sku_is_400(client: FlaskClient) -> None:
    response = client.post("/allocate", json={"orderid": "o1", "sku": "NOPE", "qty": 3})
    assert response.status_code == 400
    assert response.get_json() == {"message": "Invalid sku NOPE"}


def test_out_of_stock_is_409(client: FlaskClient) -> None:
    add_batch(client, "b1", "LAMP", 2)
    response = client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 3})
    assert response.status_code == 409
    assert response.get_json() == {"message": "Out of stock for sku LAMP"}


def test_duplicate_batch_is_409(client: FlaskClient) -> None:
    add_batch(client, "b1", "LAMP", 2)
    response = client.post("/add_batch", json={"ref": "b1", "sku": "LAMP", "qty": 5})
    assert response.status_code == 409
    assert "b1" in response.get_json()["message"]


def test_unallocated_order_is_404_json(client: FlaskClient) -> None:
    response = client.get("/allocations/nobody")
    assert response.status_code == 404
    assert response.get_json() == {"message": "No allocations for order nobody"}


def test_orderids_with_slashes_round_trip(client: FlaskClient) -> None:
    add_batch(client, "b1", "LAMP", 5)
    response = client.post("/allocate", json={"orderid": "a/b c", "sku": "LAMP", "qty": 1})
    assert response.headers["Location"] == "/allocations/a%2Fb%20c"
    assert client.get(response.headers["Location"]).get_json() == [
        {"sku": "LAMP", "batchref": "b1"}
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"sku": "LAMP", "qty": 1}, "orderid: Field required"),
        ({"orderid": "o1", "sku": "LAMP", "qty": "1"}, "qty: Input should be a valid integer"),
        ({"orderid": "o1", "sku": "LAMP", "qty": 1.5}, "qty: Input should be a valid integer"),
        ({"orderid": "o1", "sku": "LAMP", "qty": True}, "qty: Input should be a valid integer"),
        ({"orderid": "o1", "sku": "LAMP", "qty": 0}, "qty: Input should be greater than 0"),
        ({"orderid": "o1", "sku": "LAMP", "qty": -4}, "qty: Input should be greater than 0"),
        ({"orderid": "o1", "sku": "LAMP", "qty": 10**20}, "qty: Input should be less than"),
        ({"orderid": 7, "sku": "LAMP", "qty": 1}, "orderid: Input should be a valid string"),
        ({"orderid": "", "sku": "LAMP", "qty": 1}, "orderid: String should have at least 1"),
        ({"orderid": "o" * 256, "sku": "LAMP", "qty": 1}, "orderid: String should have at most"),
        ({"orderid": "o\x00", "sku": "LAMP", "qty": 1}, "orderid: String should not contain"),
        ([1, 2], "Body should be a JSON object"),
    ],
)
def test_bad_allocate_bodies_are_400_and_name_the_problem(
    client: FlaskClient, fake_service: FakeService, body: object, fragment: str
) -> None:
    add_batch(client, "b1", "LAMP", 5)
    commits = fake_service.store.commits
    response = client.post("/allocate", json=body)
    assert response.status_code == 400
    assert fragment in response.get_json()["message"]
    assert fake_service.store.commits == commits


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            {"ref": "b", "sku": "S", "qty": 1, "eta": "tomorrow"},
            "eta: Input should be a valid date",
        ),
        (
            {"ref": "b", "sku": "S", "qty": 1, "eta": "2024-02-30"},
            "eta: Input should be a valid date",
        ),
        ({"ref": "b", "sku": "S", "qty": 1, "eta": 20240101}, "eta: Input should be a valid date"),
        ({"ref": "b", "sku": "S"}, "qty: Field required"),
    ],
)
def test_bad_add_batch_bodies_are_400(
    client: FlaskClient, fake_service: FakeService, body: object, fragment: str
) -> None:
    response = client.post("/add_batch", json=body)
    assert response.status_code == 400
    assert fragment in response.get_json()["message"]
    assert fake_service.store.products == {}


@pytest.mark.parametrize("raw", [b"", b"not json", b'{"orderid": "o1",', b"\xff\xfe"])
def test_a_body_that_is_not_json_is_400(client: FlaskClient, raw: bytes) -> None:
    response = client.post("/allocate", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["message"].startswith("Body is not valid JSON")


def test_an_oversized_body_is_413(client: FlaskClient) -> None:
    body = json.dumps({"orderid": "o1", "sku": "LAMP", "qty": 1, "pad": "x" * 5000})
    response = client.post("/allocate", data=body, content_type="application/json")
    assert response.status_code == 413
    assert "message" in response.get_json()


def test_unknown_routes_and_methods_answer_json(client: FlaskClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert set(response.get_json()) == {"message"}
    response = client.get("/allocate")
    assert response.status_code == 405
    assert "message" in response.get_json()


def test_an_unexpected_error_is_a_json_500_without_internals(
    fake_service: FakeService, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_uow() -> None:
        raise RuntimeError("secret database detail")

    bus = bootstrap.bootstrap(
        Settings(),
        uow_factory=broken_uow,  # type: ignore[arg-type]
        notifications=FakeNotifications(),
    )
    service = dataclasses.replace(fake_service.api, bus=bus)
    client = create_app(Settings(), service=service).test_client()
    response = client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 1})
    assert response.status_code == 500
    assert response.get_json() == {"message": "Internal server error"}
    assert "secret database detail" in caplog.text


class TestApiToken:
    @pytest.fixture
    def guarded(self, fake_service: FakeService) -> FlaskClient:
        return create_app(Settings(api_token="s3cret"), service=fake_service.api).test_client()

    def test_writes_need_the_bearer_token(
        self, guarded: FlaskClient, fake_service: FakeService
    ) -> None:
        body = {"ref": "b1", "sku": "LAMP", "qty": 1}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = guarded.post("/add_batch", json=body, headers=headers)
            assert response.status_code == 401
            assert "Bearer" in response.get_json()["message"]
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert fake_service.store.products == {}
        ok = guarded.post("/add_batch", json=body, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 201

    def test_reads_stay_open(self, guarded: FlaskClient) -> None:
        assert guarded.get("/allocations/o1").status_code == 404
        assert guarded.get("/health").status_code == 200
