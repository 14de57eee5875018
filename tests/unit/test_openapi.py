"""The OpenAPI description: valid, complete, equal to the validation; and the offline docs."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from allocation.config import Settings
from allocation.entrypoints import validation
from allocation.entrypoints.api import schemas
from allocation.entrypoints.api.app import create_app
from allocation.entrypoints.api.description import openapi, responses
from tests.conftest import FakeService

# Routes that are not API operations: Flask's own static route (no folder behind
# it) and the files the docs page loads.
NOT_OPERATIONS = {"static", "docs_asset"}

SPEC = openapi.build_spec()


@pytest.fixture
def app(fake_service: FakeService) -> Flask:
    return create_app(Settings(max_request_bytes=4096), service=fake_service.api)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def operations_of(app: Flask) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_OPERATIONS:
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        found |= {
            (method, path) for method in rule.methods or () if method not in ("HEAD", "OPTIONS")
        }
    return found


def described_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in SPEC["paths"].items() for method in item}


def test_the_description_is_valid_openapi() -> None:
    validate_openapi(SPEC)
    assert SPEC["openapi"].startswith("3.1.")


def test_the_description_is_plain_json() -> None:
    assert json.loads(json.dumps(SPEC)) == SPEC


def test_every_route_is_described(app: Flask) -> None:
    assert operations_of(app) - described_operations() == set()


def test_every_described_operation_is_served(app: Flask) -> None:
    assert described_operations() - operations_of(app) == set()


def test_request_bodies_are_the_json_schemas_of_the_validating_models() -> None:
    for path, model in (
        ("/add_batch", schemas.AddBatchRequest),
        ("/allocate", schemas.AllocateRequest),
    ):
        media = SPEC["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        name = media["schema"]["$ref"].removeprefix("#/components/schemas/")
        assert SPEC["components"]["schemas"][name] == model.model_json_schema()
        validation.parse(model, json.dumps(media["example"]))  # the example is valid input


def test_the_orderid_parameter_has_the_schema_that_validates_it() -> None:
    (parameter,) = SPEC["paths"]["/allocations/{orderid}"]["get"]["parameters"]
    assert parameter["schema"] == schemas.path_id.json_schema()  # what parse_orderid uses
    body_orderid = dict(SPEC["components"]["schemas"]["AllocateRequest"]["properties"]["orderid"])
    body_orderid.pop("title")
    # The body's order id, except that in a path it cannot end with "/".
    assert {**parameter["schema"], "pattern": body_orderid["pattern"]} == body_orderid
    assert schemas.parse_orderid(parameter["example"]) == parameter["example"]
    path_pattern = re.compile(parameter["schema"]["pattern"])
    for orderid in ("order-1", "a/b", "ä"):
        assert path_pattern.search(orderid)
    for orderid in ("order-1/", "a\x01", ""):
        assert not path_pattern.search(orderid)


def test_every_status_is_described() -> None:
    statuses = {
        ("post", "/add_batch"): {"201", "400", "401", "409", "413", "415", "503"},
        ("post", "/allocate"): {"202", "400", "401", "409", "413", "415", "503"},
        ("get", "/allocations/{orderid}"): {"200", "400", "404", "503"},
        ("delete", "/allocations/{orderid}/{sku}"): {"200", "400", "401", "404", "415", "503"},
        ("delete", "/orders/{orderid}"): {"200", "400", "401", "404", "415", "503"},
        ("get", "/orders/{orderid}"): {"200", "400", "404", "503"},
        ("get", "/backorders/{sku}"): {"200", "400", "404", "503"},
        ("get", "/availability/{sku}"): {"200", "304", "400", "404", "503"},
        ("get", "/availability"): {"200", "400", "503"},
        ("get", "/health"): {"200"},
        ("get", "/ready"): {"200", "503"},
        ("get", "/metrics"): {"200"},
        ("get", "/"): {"302"},
    }
    for (method, path), expected in statuses.items():
        assert set(SPEC["paths"][path][method]["responses"]) == expected, (method, path)
    assert SPEC["paths"]["/allocate"]["post"]["responses"]["202"]["headers"]["Location"]["required"]
    assert SPEC["paths"]["/metrics"]["get"]["responses"]["200"]["content"].keys() == {"text/plain"}


def test_bearer_auth_is_optional_on_the_writes_only() -> None:
    scheme = SPEC["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert "API_TOKEN" in scheme["description"]
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method in ("post", "patch", "delete"):  # the token, or none without API_TOKEN
                assert operation["security"] == [{"bearerAuth": []}, {}], path
            else:
                assert "security" not in operation, path
    assert "security" not in SPEC


def test_response_examples_are_valid_responses() -> None:
    models = {
        f"#/components/schemas/{model.__name__}": model
        for model in (
            responses.BatchCreated,
            responses.AllocationAccepted,
            responses.Allocations,
            responses.Health,
            responses.Readiness,
            responses.Released,
            responses.ReleasedLines,
            responses.Order,
            responses.Backorders,
            responses.Availability,
            responses.Availabilities,
            responses.Hold,
            responses.Movements,
            responses.Error,
        )
    }
    seen = 0
    for item in SPEC["paths"].values():
        for operation in item.values():
            for response in operation["responses"].values():
                for media in response.get("content", {}).values():
                    examples = [e["value"] for e in media.get("examples", {}).values()]
                    for example in [media["example"]] if "example" in media else examples:
                        models[media["schema"]["$ref"]].model_validate(example)
                        seen += 1
    assert seen >= 35


def test_refusals_are_described_with_real_messages() -> None:
    allocate = SPEC["paths"]["/allocate"]["post"]["responses"]
    conflicts = allocate["409"]["content"]["application/json"]["examples"]
    assert conflicts["OutOfStockError"]["value"] == {"message": "Out of stock for sku SMALL-TABLE"}
    assert set(conflicts) == {"OutOfStockError", "LineConflict"}
    assert "Retry-After" in allocate["503"]["headers"]
    assert "WWW-Authenticate" in allocate["401"]["headers"]


# What the app really answers, checked against the described schema for that status.


def response_validator(path: str, method: str, status: int) -> Draft202012Validator:
    described = SPEC["paths"][path][method]["responses"][str(status)]
    schema = described["content"]["application/json"]["schema"]
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(SPEC, default_specification=DRAFT202012)
    )
    ref = {"$ref": "urn:openapi" + schema["$ref"]} if "$ref" in schema else schema
    return Draft202012Validator(ref, registry=registry)


def check(path: str, method: str, response: Any) -> None:
    assert response.content_type == "application/json"
    response_validator(path, method, response.status_code).validate(response.get_json())


def test_real_responses_match_the_description(client: FlaskClient) -> None:
    batch = {"ref": "b1", "sku": "LAMP", "qty": 5, "eta": None}
    check("/add_batch", "post", client.post("/add_batch", json=batch))
    check("/add_batch", "post", client.post("/add_batch", json=batch))  # 409
    check("/add_batch", "post", client.post("/add_batch", json={"ref": "b2"}))  # 400
    too_long = client.post("/add_batch", data="x" * 5000, content_type="application/json")
    assert too_long.status_code == 413
    check("/add_batch", "post", too_long)
    not_json = client.post("/add_batch", data="x", content_type="text/plain")
    assert not_json.status_code == 415
    check("/add_batch", "post", not_json)

    allocated = client.post("/allocate", json={"orderid": "o1", "sku": "LAMP", "qty": 2})
    assert allocated.status_code == 202
    check("/allocate", "post", allocated)
    check(
        "/allocate",
        "post",
        client.post("/allocate", json={"orderid": "o2", "sku": "NOPE", "qty": 1}),
    )
    out_of_stock = client.post("/allocate", json={"orderid": "o3", "sku": "LAMP", "qty": 50})
    assert out_of_stock.status_code == 409
    check("/allocate", "post", out_of_stock)

    found = client.get(allocated.headers["Location"])
    assert found.status_code == 200
    check("/allocations/{orderid}", "get", found)
    check("/allocations/{orderid}", "get", client.get("/allocations/nobody"))  # 404
    check("/allocations/{orderid}", "get", client.get("/allocations/" + "o" * 300))  # 400
    check("/health", "get", client.get("/health"))


# /openapi.json and the docs page.


def test_the_description_is_served(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.get_json() == SPEC


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [
            value for name, value in attrs if name in ("src", "href") and value is not None
        ]


def docs_page_urls(client: FlaskClient) -> list[str]:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    assert not re.search(r"https?:", page.get_data(as_text=True)), "the page names another host"
    parser = _Links()
    parser.feed(page.get_data(as_text=True))
    return parser.urls


def test_the_docs_page_loads_only_local_assets(client: FlaskClient) -> None:
    urls = docs_page_urls(client)
    assert len(urls) >= 4
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
    csp = client.get("/docs").headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "http" not in csp


def test_the_docs_assets_are_served(client: FlaskClient) -> None:
    types = {}
    for url in docs_page_urls(client):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.get_data(), url
        types[url.rsplit("/", 1)[1]] = response.mimetype
        response.close()
    assert types["swagger-ui-bundle.js"] == types["swagger-initializer.js"] == "text/javascript"
    assert types["swagger-ui.css"] == "text/css"


def test_the_docs_page_reads_our_description_and_no_online_validator(client: FlaskClient) -> None:
    script = client.get("/docs/assets/swagger-initializer.js").get_data(as_text=True)
    config = json.loads(re.search(r"SwaggerUIBundle\((\{.*\})\)", script).group(1))  # type: ignore[union-attr]
    assert config["url"] == "/openapi.json"
    assert config["validatorUrl"] is None
    assert "http" not in script


@pytest.mark.parametrize(
    "name",
    ["LICENSE", "oauth2-redirect.html", "nope.js", "..%2F__init__.py", "%2E%2E%2Fdist%2FVERSION"],
)
def test_only_the_pages_assets_are_served(client: FlaskClient, name: str) -> None:
    assert client.get(f"/docs/assets/{name}").status_code == 404
