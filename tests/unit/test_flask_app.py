"""The HTTP edge with a fake bus: status codes, bodies and input validation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from allocation import bootstrap
from allocation.config import Settings
from allocation.entrypoints.api.app import create_app
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
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


def test_the_home_page_is_the_docs(client: FlaskClient) -> None:
    response = client.get("/")
    assert (response.status_code, response.headers["Location"]) == (302, "/docs")
    assert client.get("/", follow_redirects=True).mimetype == "text/html"


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/docs/", "/docs"),
        ("/allocations/o1/", "/allocations/o1"),
        ("/allocations/o1//", "/allocations/o1"),
        ("/availability/LAMP/?qty=2&x=%2F", "/availability/LAMP?qty=2&x=%2F"),
        ("/orders/a%20b/", "/orders/a%20b"),
    ],
)
def test_a_trailing_slash_is_dropped_never_taken_into_an_id(
    client: FlaskClient, path: str, target: str
) -> None:
    response = client.get(path)
    assert (response.status_code, response.headers["Location"]) == (308, target)


def test_a_write_with_a_trailing_slash_is_redirected_with_its_method(
    client: FlaskClient, fake_service: FakeService
) -> None:
    add_batch(client, "b1", "LAMP", 5)
    body = {"orderid": "o1", "sku": "LAMP", "qty": 1}
    response = client.post("/allocate/", json=body, follow_redirects=True)
    assert response.status_code == 202
    assert client.get("/allocations/o1/", follow_redirects=True).get_json() == [
        {"sku": "LAMP", "batchref": "b1"}
    ]


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

    def test_cancelling_needs_the_bearer_token(
        self, guarded: FlaskClient, fake_service: FakeService
    ) -> None:
        token = {"Authorization": "Bearer s3cret"}
        guarded.post("/add_batch", json={"ref": "b1", "sku": "LAMP", "qty": 1}, headers=token)
        guarded.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 1}, headers=token)
        for path in ("/allocations/o1/LAMP", "/orders/o1"):
            assert guarded.delete(path).status_code == 401
            assert guarded.delete(path, headers={"Authorization": "Bearer no"}).status_code == 401
        assert guarded.get("/allocations/o1").status_code == 200
        assert guarded.delete("/orders/o1", headers=token).status_code == 200

    def test_reads_stay_open(self, guarded: FlaskClient) -> None:
        assert guarded.get("/allocations/o1").status_code == 404
        assert guarded.get("/health").status_code == 200
        assert guarded.get("/availability/LAMP").status_code == 404


class TestBackorders:
    def test_a_line_asked_to_wait_is_202_backordered_at_its_order(
        self, client: FlaskClient
    ) -> None:
        add_batch(client, "b1", "LAMP", 1)
        body = {"orderid": "o/1", "sku": "LAMP", "qty": 3, "backorder": True}

        response = client.post("/allocate", json=body)

        assert response.status_code == 202
        assert response.get_json() == {"batchref": None, "status": "backordered"}
        assert response.headers["Location"] == "/orders/o%2F1"
        again = client.post("/allocate", json=body)
        assert (again.status_code, again.get_json()) == (202, response.get_json())
        conflict = client.post("/allocate", json=body | {"qty": 4})
        assert conflict.status_code == 409
        assert client.get("/allocations/o%2F1").status_code == 404  # only allocated lines

    def test_a_line_that_fits_says_allocated_when_the_client_asked(
        self, client: FlaskClient
    ) -> None:
        add_batch(client, "b1", "LAMP", 5)
        body = {"orderid": "o1", "sku": "LAMP", "qty": 3, "backorder": True}
        response = client.post("/allocate", json=body)
        assert response.get_json() == {"batchref": "b1", "status": "allocated"}
        assert response.headers["Location"] == "/allocations/o1"
        plain = client.post("/allocate", json={"orderid": "o2", "sku": "LAMP", "qty": 1})
        assert plain.get_json() == {"batchref": "b1"}  # the existing contract

    def test_an_order_shows_every_line_and_the_queue_its_waiting_ones(
        self, client: FlaskClient
    ) -> None:
        add_batch(client, "b1", "LAMP", 5, "2030-01-01")
        add_batch(client, "b2", "VASE", 1)
        client.post("/allocate", json={"orderid": "o1", "sku": "VASE", "qty": 2, "backorder": True})
        client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 3})

        order = client.get("/orders/o1")

        assert order.status_code == 200
        assert order.get_json() == {
            "orderid": "o1",
            "lines": [
                {
                    "sku": "LAMP",
                    "qty": 3,
                    "status": "allocated",
                    "batchref": "b1",
                    "eta": "2030-01-01",
                },
                {"sku": "VASE", "qty": 2, "status": "backordered", "batchref": None, "eta": None},
            ],
        }
        [waiting] = client.get("/backorders/VASE").get_json()
        assert (waiting["orderid"], waiting["qty"]) == ("o1", 2)
        assert waiting["since"].endswith("+00:00")
        assert client.get("/backorders/LAMP").get_json() == []
        assert client.get("/backorders/NOPE").status_code == 404
        missing = client.get("/orders/nobody")
        assert (missing.status_code, missing.get_json()) == (
            404,
            {"message": "Order nobody has no lines"},
        )


class TestCancel:
    def test_cancelling_a_line_answers_what_was_released(self, client: FlaskClient) -> None:
        add_batch(client, "b1", "LAMP", 5)
        client.post("/allocate", json={"orderid": "a/b", "sku": "LAMP", "qty": 2})

        response = client.delete("/allocations/a%2Fb/LAMP")

        assert response.status_code == 200
        assert response.get_json() == {"orderid": "a/b", "sku": "LAMP", "qty": 2, "batchref": "b1"}
        again = client.delete("/allocations/a%2Fb/LAMP")
        assert (again.status_code, again.get_json()) == (
            404,
            {"message": "Order a/b has no line for sku LAMP"},
        )

    def test_cancelling_an_order_answers_every_line(self, client: FlaskClient) -> None:
        add_batch(client, "b1", "LAMP", 5)
        add_batch(client, "b2", "VASE", 1)
        client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 2})
        client.post("/allocate", json={"orderid": "o1", "sku": "VASE", "qty": 2, "backorder": True})

        response = client.delete("/orders/o1")

        assert response.status_code == 200
        assert response.get_json() == [
            {"orderid": "o1", "sku": "LAMP", "qty": 2, "batchref": "b1"},
            {"orderid": "o1", "sku": "VASE", "qty": 2, "batchref": None},
        ]
        assert client.delete("/orders/o1").status_code == 404

    def test_a_delete_with_a_body_that_is_not_json_is_415(self, client: FlaskClient) -> None:
        response = client.delete("/orders/o1", data="x", content_type="text/plain")
        assert response.status_code == 415


class TestAvailability:
    def test_answers_how_many_and_when(self, client: FlaskClient) -> None:
        add_batch(client, "warehouse", "LAMP", 5)
        add_batch(client, "ship", "LAMP", 10, "2030-01-01")
        client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 2})

        response = client.get("/availability/LAMP")

        assert response.status_code == 200
        assert response.get_json() == {
            "sku": "LAMP",
            "version": 3,
            "available": 13,
            "in_stock": 3,
            "incoming": [{"eta": "2030-01-01", "qty": 10}],
            "backordered": 0,
            "held": 0,
        }
        asked = client.get("/availability/LAMP?qty=4").get_json()
        assert (asked["can_allocate"], asked["eta"]) == (True, "2030-01-01")
        asked = client.get("/availability/LAMP?qty=3").get_json()
        assert (asked["can_allocate"], asked["eta"]) == (True, None)
        asked = client.get("/availability/LAMP?qty=11").get_json()
        assert (asked["can_allocate"], asked["eta"]) == (False, None)

    def test_the_etag_is_the_version_and_answers_304(self, client: FlaskClient) -> None:
        add_batch(client, "b1", "LAMP", 5)
        first = client.get("/availability/LAMP")
        assert first.headers["ETag"] == '"v1"'
        same = client.get("/availability/LAMP", headers={"If-None-Match": '"v1"'})
        assert (same.status_code, same.get_data()) == (304, b"")
        client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 2})
        changed = client.get("/availability/LAMP", headers={"If-None-Match": '"v1"'})
        assert (changed.status_code, changed.headers["ETag"]) == (200, '"v2"')

    def test_several_skus_in_the_order_asked_unknown_ones_left_out(
        self, client: FlaskClient
    ) -> None:
        add_batch(client, "b1", "LAMP", 5)
        add_batch(client, "b2", "VASE", 1)
        response = client.get("/availability?sku=VASE&sku=NOPE&sku=LAMP&qty=2")
        assert response.status_code == 200
        assert [(a["sku"], a["can_allocate"]) for a in response.get_json()] == [
            ("VASE", False),
            ("LAMP", True),
        ]

    @pytest.mark.parametrize(
        ("path", "message"),
        [
            ("/availability/NOPE", "Unknown SKU NOPE"),
            ("/availability/LAMP?qty=0", "qty: Input should be greater than 0"),
            ("/availability/LAMP?qty=-1", "qty: Input should be a whole number"),
            ("/availability/LAMP?qty=2.0", "qty: Input should be a whole number"),
            ("/availability/LAMP?qty=%EF%BC%95", "qty: Input should be a whole number"),
            ("/availability/LAMP?qty=99999999999999999999", "qty: Input should be less than"),
            ("/availability", "sku: give between 1 and 100 (got 0)"),
            ("/availability?" + "&".join(["sku=A"] * 101), "sku: give between 1 and 100 (got 101)"),
            ("/availability?sku=" + "x" * 256, "sku: String should have at most 255 characters"),
            ("/availability/%01", "sku: String should not contain control characters"),
        ],
    )
    def test_bad_questions_are_answered_with_what_is_wrong(
        self, client: FlaskClient, path: str, message: str
    ) -> None:
        add_batch(client, "b1", "LAMP", 5)
        response = client.get(path)
        assert response.status_code in (400, 404)
        assert response.get_json()["message"].startswith(message)
