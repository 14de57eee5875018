"""The HTTP API: parse the request, call the bus or the view, map the result to HTTP."""

from __future__ import annotations

import hmac
from urllib.parse import quote

from flask import Flask, Response, jsonify, request

from allocation import bootstrap, views
from allocation.config import Settings
from allocation.entrypoints import errors, schemas
from allocation.service_layer.messagebus import MessageBus


def create_app(settings: Settings | None = None, bus: MessageBus | None = None) -> Flask:
    """Builds the app; pass a bus to wire fakes, or settings to build the real one."""
    settings = settings or Settings()
    bus = bus or bootstrap.bootstrap(settings)
    app = Flask("allocation")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.register(app)
    if settings.api_token:
        _require_token_for_writes(app, settings.api_token)

    @app.get("/health")
    def health() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    @app.post("/add_batch")
    def add_batch() -> tuple[Response, int]:
        cmd = schemas.parse(schemas.AddBatchRequest, request.get_data()).to_command()
        bus.handle(cmd)
        return jsonify(ref=cmd.ref), 201

    @app.post("/allocate")
    def allocate() -> tuple[Response, int, dict[str, str]]:
        cmd = schemas.parse(schemas.AllocateRequest, request.get_data()).to_command()
        batchref = bus.handle(cmd)
        location = f"/allocations/{quote(cmd.orderid, safe='')}"
        return jsonify(batchref=batchref), 202, {"Location": location}

    @app.get("/allocations/<path:orderid>")
    def allocations_for_order(orderid: str) -> tuple[Response, int]:
        orderid = schemas.parse_orderid(orderid)
        result = views.allocations(orderid, bus.uow_factory())
        if not result:
            return errors.error_response(f"No allocations for order {orderid}", 404)
        return jsonify(result), 200

    return app


def _require_token_for_writes(app: Flask, token: str) -> None:
    expected = f"Bearer {token}".encode()

    @app.before_request
    def check_token() -> None:
        if request.method != "POST":
            return
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise errors.Unauthorized("A valid 'Authorization: Bearer <token>' header is required")
