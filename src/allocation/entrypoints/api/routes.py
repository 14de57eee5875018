"""The API's routes: parse the request, call the bus or a query, map the result to HTTP.

Paths take ids as the path converter gives them: an order id may hold a `/`. In
`DELETE /allocations/<orderid>/<sku>` the SKU is the last segment, so a SKU holding a
`/` cannot be named there (`DELETE /orders/<orderid>` releases its line).
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, jsonify, request
from werkzeug.http import parse_etags, quote_etag, unquote_etag

from allocation import bootstrap, views
from allocation.domain import commands
from allocation.domain.availability import Availability
from allocation.domain.model import Allocation, Release
from allocation.entrypoints import validation
from allocation.entrypoints.api import bodies, errors, holds, schemas
from allocation.entrypoints.api.observability import request_source
from allocation.service_layer.ports import MovementRecord


def add(app: Flask, service: bootstrap.Api, limit: int) -> None:
    """Every route of the allocation API (the operational ones are in app.py)."""
    _writes(app, service, limit)
    _reads(app, service)
    _availability(app, service)
    holds.add(app, service, limit)


def _writes(app: Flask, service: bootstrap.Api, limit: int) -> None:
    bus = service.bus

    @app.post("/add_batch")
    def add_batch() -> tuple[Response, int]:
        cmd = validation.parse(schemas.AddBatchRequest, bodies.read(limit)).to_command()
        bus.handle(cmd, request_source())
        return jsonify(ref=cmd.ref), 201

    @app.post("/allocate")
    def allocate() -> tuple[Response, int, dict[str, str]]:
        body = validation.parse(schemas.AllocateRequest, bodies.read(limit))
        allocation: Allocation = bus.handle(body.to_command(), request_source())
        return _accepted(body, allocation)

    @app.delete("/allocations/<path:orderid>/<sku>")
    def cancel_line(orderid: str, sku: str) -> tuple[Response, int]:
        orderid = schemas.parse_orderid(orderid)
        sku = schemas.parse_name(sku, "sku", schemas.segment)
        release: Release = bus.handle(commands.CancelLine(orderid, sku), request_source())
        return jsonify(_released(release)), 200

    @app.delete("/orders/<path:orderid>")
    def cancel_order(orderid: str) -> tuple[Response, int]:
        command = commands.CancelOrder(schemas.parse_orderid(orderid))
        releases: list[Release] = bus.handle(command, request_source())
        return jsonify([_released(release) for release in releases]), 200


def _accepted(
    body: schemas.AllocateRequest, allocation: Allocation
) -> tuple[Response, int, dict[str, str]]:
    orderid = quote(body.orderid, safe="")
    if allocation.backordered:
        answer = {"batchref": None, "status": "backordered"}
        return jsonify(answer), 202, {"Location": f"/orders/{orderid}"}
    answer = {"batchref": allocation.batchref}
    if body.asks_about_backorders:
        answer["status"] = "allocated"
    return jsonify(answer), 202, {"Location": f"/allocations/{orderid}"}


def _released(release: Release) -> dict[str, Any]:
    line = release.line
    return {"orderid": line.orderid, "sku": line.sku, "qty": line.qty, "batchref": release.batchref}


def _reads(app: Flask, service: bootstrap.Api) -> None:
    read_model = service.read_model

    @app.get("/allocations/<path:orderid>")
    def allocations_for_order(orderid: str) -> tuple[Response, int]:
        orderid = schemas.parse_orderid(orderid)
        result = views.allocations(orderid, read_model)
        if not result:
            raise errors.NoAllocations(orderid)
        return _json(result), 200

    @app.get("/orders/<path:orderid>")
    def order(orderid: str) -> tuple[Response, int]:
        orderid = schemas.parse_orderid(orderid)
        lines = views.order(orderid, read_model)
        if not lines:
            raise errors.NoLines(orderid)
        shown = [vars(line) | {"eta": _day(line.eta)} for line in lines]
        return jsonify(orderid=orderid, lines=shown), 200

    @app.get("/backorders/<path:sku>")
    def backorders(sku: str) -> tuple[Response, int]:
        sku = schemas.parse_name(sku, "sku")
        waiting = views.queue(sku, read_model)
        if waiting is None:
            raise errors.UnknownSku(sku)
        shown = [
            {"orderid": w.orderid, "qty": w.qty, "since": w.since.isoformat()} for w in waiting
        ]
        return jsonify(shown), 200

    @app.get("/products/<path:sku>/movements")
    def movements(sku: str) -> tuple[Response, int]:
        sku = schemas.parse_name(sku, "sku")
        after = schemas.parse_count(request.args.get("after"), "after", 0, 0, 2**31 - 1)
        limit = schemas.parse_count(request.args.get("limit"), "limit", 100, 1, MAX_MOVEMENTS)
        page = views.movements(sku, after, limit, read_model)
        if page is None:
            raise errors.UnknownSku(sku)
        shown = [_movement(record) for record in page.records]
        return jsonify(sku=sku, movements=shown, next=page.next_after), 200


# The most movements one page holds.
MAX_MOVEMENTS = 1000


def _movement(record: MovementRecord) -> dict[str, Any]:
    movement = record.movement
    shown: dict[str, Any] = {
        "seq": movement.seq,
        "at": record.at.isoformat(),
        "kind": movement.kind,
        "qty": movement.qty,
        "batchref": movement.batchref,
        "version": movement.version,
        "reason": movement.reason,
    }
    for name in ("orderid", "holdid"):  # only where one applies
        if getattr(movement, name) is not None:
            shown[name] = getattr(movement, name)
    shown["source"] = record.source
    return shown


def _availability(app: Flask, service: bootstrap.Api) -> None:
    read_model = service.read_model

    @app.get("/availability/<path:sku>")
    def availability(sku: str) -> Response:
        sku = schemas.parse_name(sku, "sku")
        qty = _asked_quantity()
        found = views.availability([sku], read_model)
        if not found:
            raise errors.UnknownSku(sku)
        answer, etag = _rendered(found[0], qty)
        if _not_modified(etag):
            return Response(status=304, headers=[("ETag", etag)])
        return Response(answer, headers=[("ETag", etag)], content_type="application/json")

    @app.get("/availability")
    def availabilities() -> tuple[Response, int]:
        skus = schemas.parse_skus(request.args.getlist("sku"))
        qty = _asked_quantity()
        answers = [_rendered(a, qty)[0].rstrip("\n") for a in views.availability(skus, read_model)]
        return Response(f"[{','.join(answers)}]\n", mimetype="application/json"), 200


def _asked_quantity() -> int | None:
    query = request.query_string
    if not query:
        return None
    if query.startswith(b"qty=") and query[4:].isdigit():  # the usual question, parsed here
        return schemas.parse_quantity(query[4:].decode("ascii"))
    raw = request.args.get("qty")
    return None if raw is None else schemas.parse_quantity(raw)


def _not_modified(etag: str) -> bool:
    """Whether the client's If-None-Match names this version (weak comparison, as
    RFC 9110 asks for If-None-Match; `*` matches any)."""
    given = request.environ.get("HTTP_IF_NONE_MATCH")
    return given is not None and parse_etags(given).contains_weak(unquote_etag(etag)[0])


def _json(body: Any) -> Response:
    """What jsonify sends, without its per-call lookups: for the hottest routes."""
    return Response(json.dumps(body, separators=(",", ":")) + "\n", mimetype="application/json")


@functools.lru_cache(maxsize=8192)
def _rendered(availability: Availability, qty: int | None) -> tuple[str, str]:
    """The answer and its ETag, rendered once per version of a SKU and quantity asked."""
    return _answer(availability, qty), quote_etag(f"v{availability.version}")


def _answer(availability: Availability, qty: int | None) -> str:
    """The availability as JSON text; with ``qty``, what allocating that many would do.
    The same for every such question about one version of a SKU (the value is
    immutable)."""
    shown: dict[str, Any] = {
        "sku": availability.sku,
        "version": availability.version,
        "available": availability.available,
        "in_stock": availability.in_stock,
        "incoming": [{"eta": eta.isoformat(), "qty": n} for eta, n in availability.incoming],
        "backordered": availability.backordered,
        "held": availability.held,
    }
    if qty is not None:
        promise = availability.promise(qty)
        shown["can_allocate"] = promise.can_allocate
        shown["eta"] = _day(promise.eta)
    return json.dumps(shown, separators=(",", ":")) + "\n"


def _day(day: Any) -> str | None:
    return None if day is None else str(day.isoformat())
