"""The routes of holds: stock set aside for a checkout, then confirmed, released or expired.

A hold is named by its client's ``holdid``, one path segment (no `/`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Flask, Response, jsonify

from allocation import bootstrap, views
from allocation.domain import commands
from allocation.domain.exceptions import UnknownHold
from allocation.domain.holds import HoldState
from allocation.domain.model import Allocation
from allocation.entrypoints import validation
from allocation.entrypoints.api import bodies, schemas
from allocation.entrypoints.api.observability import request_source


def add(app: Flask, service: bootstrap.Api, limit: int) -> None:
    bus, read_model = service.bus, service.read_model

    @app.post("/holds")
    def place_hold() -> tuple[Response, int, dict[str, str]]:
        body = validation.parse(schemas.PlaceHoldRequest, bodies.read(limit))
        hold: HoldState = bus.handle(body.to_command(), request_source())
        return jsonify(shown(hold)), 201, {"Location": f"/holds/{quote(hold.holdid, safe='')}"}

    @app.get("/holds/<holdid>")
    def get_hold(holdid: str) -> tuple[Response, int]:
        holdid = _holdid(holdid)
        hold = views.hold(holdid, read_model)
        if hold is None:
            raise UnknownHold(holdid)
        return jsonify(shown(hold)), 200

    @app.patch("/holds/<holdid>")
    def extend_hold(holdid: str) -> tuple[Response, int]:
        body = validation.parse(schemas.ExtendHoldRequest, bodies.read(limit))
        command = commands.ExtendHold(_holdid(holdid), body.ttl_seconds)
        return jsonify(shown(bus.handle(command, request_source()))), 200

    @app.delete("/holds/<holdid>")
    def release_hold(holdid: str) -> tuple[Response, int]:
        command = commands.ReleaseHold(_holdid(holdid))
        return jsonify(shown(bus.handle(command, request_source()))), 200

    @app.post("/holds/<holdid>/confirm")
    def confirm_hold(holdid: str) -> tuple[Response, int, dict[str, str]]:
        body = validation.parse(schemas.ConfirmHoldRequest, bodies.read(limit))
        command = commands.ConfirmHold(_holdid(holdid), body.orderid)
        allocation: Allocation = bus.handle(command, request_source())
        location = f"/allocations/{quote(body.orderid, safe='')}"
        return jsonify(batchref=allocation.batchref), 202, {"Location": location}


def shown(hold: HoldState) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "holdid": hold.holdid,
        "sku": hold.sku,
        "qty": hold.qty,
        "batchref": hold.batchref,
        "status": hold.status,
        "expires_at": hold.expires_at.isoformat(),
    }
    if hold.orderid is not None:
        answer["orderid"] = hold.orderid
    return answer


def _holdid(raw: str) -> str:
    return schemas.parse_name(raw, "holdid", schemas.segment)
