"""Holds: stock set aside for a checkout that may not pay, given back when it ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

HoldStatus = Literal["active", "confirmed", "released", "expired"]
# Why a hold ended: its customer released it, its time ran out, it became an order
# line, or its batch shrank and no other batch could take it (status "released").
HoldEndReason = Literal["released", "expired", "confirmed", "batch_reduced"]


@dataclass(frozen=True)
class HoldState:
    """A hold as a client sees it at one moment."""

    holdid: str
    sku: str
    qty: int
    batchref: str
    status: HoldStatus
    expires_at: datetime
    orderid: str | None = None


class Hold:
    """Units of one batch set aside for a checkout until ``expires_at``.

    While active they count as taken for every allocation, backorder and availability
    answer. The ``holdid`` is the client's, so a retried placement is recognised. A
    hold past its ``expires_at`` is over whether or not it has been expired yet: it
    can no longer be confirmed, extended or released.
    """

    def __init__(
        self,
        holdid: str,
        sku: str,
        qty: int,
        batchref: str,
        expires_at: datetime,
        placed_at: datetime,
        status: HoldStatus = "active",
        orderid: str | None = None,
    ) -> None:
        self.holdid = holdid
        self.sku = sku
        self.qty = qty
        self.batchref = batchref
        self.expires_at = expires_at
        self.placed_at = placed_at
        self.status: HoldStatus = status
        self.orderid = orderid  # the order line it became, once confirmed

    def __repr__(self) -> str:
        return f"<Hold {self.holdid} {self.sku} x{self.qty} {self.status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hold) and other.holdid == self.holdid

    def __hash__(self) -> int:
        return hash(self.holdid)

    def is_active(self, now: datetime) -> bool:
        """Whether it still holds its units for its customer at ``now``."""
        return self.status == "active" and now < self.expires_at

    def is_due(self, now: datetime) -> bool:
        """Whether its time has run out at ``now`` but nothing has expired it yet."""
        return self.status == "active" and self.expires_at <= now

    def state(self, now: datetime) -> HoldStatus:
        return status_seen_at(self.status, self.expires_at, now)

    def seen_at(self, now: datetime) -> HoldState:
        return HoldState(
            self.holdid,
            self.sku,
            self.qty,
            self.batchref,
            self.state(now),
            self.expires_at,
            self.orderid,
        )

    def end(self, reason: HoldEndReason, orderid: str | None = None) -> None:
        self.status = "released" if reason == "batch_reduced" else reason
        self.orderid = orderid


def status_seen_at(status: HoldStatus, expires_at: datetime, now: datetime) -> HoldStatus:
    """A hold's status as a client sees it at ``now``: an active hold past its time is
    expired, though nothing has expired it yet."""
    return "expired" if status == "active" and expires_at <= now else status
