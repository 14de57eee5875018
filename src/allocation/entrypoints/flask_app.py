"""The HTTP API: parse the request, call the bus or the view, map the result to HTTP."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from urllib.parse import quote

from flask import Flask, Response, g, jsonify, request

from allocation import bootstrap, views
from allocation.adapters import metrics
from allocation.config import Settings
from allocation.entrypoints import errors, openapi, schemas
from allocation.service_layer import log_context, relay
from allocation.service_layer.messagebus import UnitOfWorkFactory

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    service: bootstrap.Api | None = None,
) -> Flask:
    """Builds the app; pass the service's parts to wire fakes, or settings for real ones."""
    settings = settings or Settings()
    if service is None:
        service = bootstrap.api(settings)
    app = Flask("allocation")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    errors.register(app)
    _observe_requests(app)
    if settings.api_token:
        _require_token_for_writes(app, settings.api_token)
    _add_routes(app, service)
    openapi.register_docs(app)
    return app


def _add_routes(app: Flask, service: bootstrap.Api) -> None:
    bus, read_model = service.bus, service.read_model

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
        result = views.allocations(orderid, read_model)
        if not result:
            return errors.error_response(f"No allocations for order {orderid}", 404)
        return jsonify(result), 200

    @app.get("/health")
    def health() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    @app.get("/ready")
    def ready() -> tuple[Response, int]:
        checks = service.readiness()
        healthy = all(state in ("ok", "not configured") for state in checks.values())
        status = "ready" if healthy else "unavailable"
        return jsonify(status=status, checks=checks), 200 if healthy else 503

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        _update_outbox_gauges(service.uow_factory)
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)


def _update_outbox_gauges(uow_factory: UnitOfWorkFactory) -> None:
    try:
        backlog = relay.backlog(uow_factory())
    except Exception as error:  # metrics must answer even when the database does not
        logger.warning("outbox backlog unavailable for /metrics: %s", error)
        return
    metrics.OUTBOX_UNSENT.set(backlog.unsent)
    age = 0.0 if backlog.oldest is None else time.time() - backlog.oldest.timestamp()
    metrics.OUTBOX_OLDEST_AGE.set(max(age, 0.0))


def _observe_requests(app: Flask) -> None:
    """Request ids in and out, one log line and the metrics for every request."""

    @app.before_request
    def start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _usable_request_id(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()
        g.unbind_log_context = log_context.bind(request_id=g.request_id)

    @app.after_request
    def finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
        metrics.LATENCY.labels(endpoint, request.method).observe(elapsed)
        response.headers["X-Request-ID"] = g.get("request_id", "")
        logger.info(
            "%s %s %d %.1fms", request.method, request.path, response.status_code, elapsed * 1000
        )
        return response

    @app.teardown_request
    def unbind(_error: BaseException | None) -> None:
        unbind = g.pop("unbind_log_context", None)
        if unbind is not None:
            unbind()


def _usable_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


def _require_token_for_writes(app: Flask, token: str) -> None:
    expected = f"Bearer {token}".encode()

    @app.before_request
    def check_token() -> None:
        if request.method != "POST":
            return
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise errors.Unauthorized("A valid 'Authorization: Bearer <token>' header is required")
