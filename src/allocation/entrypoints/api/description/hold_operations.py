"""The HTTP operations of holds and stock movements, declared as operations.py declares
the rest."""

from __future__ import annotations

from typing import Any

from allocation.domain import exceptions
from allocation.entrypoints import validation
from allocation.entrypoints.api import schemas
from allocation.entrypoints.api.description import responses
from allocation.entrypoints.api.description.declarations import (
    BAD_QUANTITY,
    SKU,
    Answer,
    Operation,
    Parameter,
)
from allocation.entrypoints.api.errors import UnknownSku

_HOLDID = Parameter(
    schemas.segment.json_schema(), "The client's id for the hold (one path segment).", "cart-7"
)
_HOLD = {
    "holdid": "cart-7",
    "sku": "SMALL-TABLE",
    "qty": 1,
    "batchref": "batch-001",
    "status": "active",
    "expires_at": "2026-12-05T10:15:00+00:00",
}
_UNKNOWN = exceptions.UnknownHold("cart-7")
_BAD_HOLDID = validation.InvalidInput("holdid: String should not contain control characters")
_ENDED = exceptions.HoldConflict("cart-7", "cannot be confirmed: it is expired")


def _hold(status: int, description: str, example: dict[str, Any] = _HOLD) -> Answer:
    return Answer(status, description, responses.Hold, example)


_PLACE = Operation(
    "post",
    "/holds",
    "placeHold",
    "holds",
    "Set stock aside for a checkout",
    (
        Answer(
            201,
            "The units are held until `expires_at`.",
            responses.Hold,
            _HOLD,
            headers={"Location": "`/holds/<holdid>`."},
        ),
    ),
    description=(
        "Takes the units from the batch an allocation would choose; from then on they"
        " count as taken for every allocation, backorder and availability answer, until"
        " the hold is confirmed, released or expires. A hold never waits: when no batch"
        " can take it whole the answer is 409 (and `out_of_stock` is published). Placing"
        " the same hold again (same `holdid`, SKU and qty) while it is active answers it"
        " unchanged (its expiry is not moved); another SKU or qty, or a hold that has"
        " ended, is a 409."
    ),
    body=schemas.PlaceHoldRequest,
    body_example={"holdid": "cart-7", "sku": "SMALL-TABLE", "qty": 1, "ttl_seconds": 900},
    refusals=(
        BAD_QUANTITY,
        exceptions.InvalidSku("SMALL-TABLE"),
        exceptions.OutOfStockError("SMALL-TABLE"),
        exceptions.HoldConflict("cart-7", "was placed for 2 of sku SMALL-TABLE"),
    ),
    writes=True,
)
_CONFIRM = Operation(
    "post",
    "/holds/{holdid}/confirm",
    "confirmHold",
    "holds",
    "Confirm a hold: its units become an order line",
    (
        Answer(
            202,
            "The order line is allocated to the hold's batch.",
            responses.AllocationAccepted,
            {"batchref": "batch-001"},
            headers={"Location": "`/allocations/<orderid>`."},
        ),
    ),
    description=(
        "Exactly as a successful `POST /allocate` of the hold's SKU and qty for the"
        " order, in the hold's batch. Confirming again for the same order answers the"
        " same. A hold that is not active (one past its `expires_at` included), or an"
        " order that already has a line for the SKU, is a 409, and nothing changes."
    ),
    body=schemas.ConfirmHoldRequest,
    body_example={"orderid": "order-3"},
    refusals=(validation.InvalidInput("orderid: Field required"), _UNKNOWN, _ENDED),
    parameters={"holdid": _HOLDID},
    writes=True,
)
_MOVEMENT = {
    "seq": 2,
    "at": "2026-12-05T09:05:00+00:00",
    "kind": "hold_placed",
    "qty": -1,
    "batchref": "batch-001",
    "version": 2,
    "reason": "placed",
    "holdid": "cart-7",
    "source": {"request_id": "8d21f0c4"},
}
_MOVEMENTS = Operation(
    "get",
    "/products/{sku}/movements",
    "getMovements",
    "holds",
    "Why a SKU's stock is what it is: its movements",
    (
        Answer(
            200,
            "A page of movements, oldest first; all of them add up to `available`.",
            responses.Movements,
            {"sku": "SMALL-TABLE", "movements": [_MOVEMENT], "next": None},
        ),
    ),
    description=(
        "Every change of the SKU's `available`, written in the change's own transaction:"
        " `seq` counts from 1 with no gaps, `qty` is signed, `version` is the product's"
        " after the change, `source` what caused it. Page with `?after=<next>`."
    ),
    refusals=(
        validation.InvalidInput("limit: give a whole number from 1 to 1000"),
        UnknownSku("SMALL-TABLE"),
    ),
    parameters={
        "sku": SKU,
        "after": Parameter(
            {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
            "Movements numbered after this one (0: from the first).",
            0,
            location="query",
            required=False,
        ),
        "limit": Parameter(
            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            "At most this many.",
            100,
            location="query",
            required=False,
        ),
    },
)

HOLD_OPERATIONS: tuple[Operation, ...] = (
    _PLACE,
    Operation(
        "get",
        "/holds/{holdid}",
        "getHold",
        "holds",
        "A hold: active, confirmed, released or expired",
        (
            _hold(
                200,
                "The hold; an active one past its `expires_at` is `expired`.",
                _HOLD | {"status": "confirmed", "orderid": "order-3"},
            ),
        ),
        refusals=(_BAD_HOLDID, _UNKNOWN),
        parameters={"holdid": _HOLDID},
    ),
    Operation(
        "patch",
        "/holds/{holdid}",
        "extendHold",
        "holds",
        "Extend an active hold",
        (_hold(200, "The hold, now expiring `ttl_seconds` from now."),),
        body=schemas.ExtendHoldRequest,
        body_example={"ttl_seconds": 600},
        refusals=(validation.InvalidInput("ttl_seconds: Field required"), _UNKNOWN, _ENDED),
        parameters={"holdid": _HOLDID},
        writes=True,
    ),
    Operation(
        "delete",
        "/holds/{holdid}",
        "releaseHold",
        "holds",
        "Release a hold: its units go back",
        (_hold(200, "The hold, released.", _HOLD | {"status": "released"}),),
        description=(
            "The units go back in the same transaction, to the SKU's waiting lines oldest"
            " first. Releasing a released hold changes nothing; a confirmed or expired one"
            " is a 409."
        ),
        refusals=(_BAD_HOLDID, _UNKNOWN, _ENDED),
        parameters={"holdid": _HOLDID},
        writes=True,
    ),
    _CONFIRM,
    _MOVEMENTS,
)
