"""Stock movements: the ledger of every change of a SKU's available stock.

Each change of a product records what moved, in its own transaction, so the sum
of a SKU's movements is always its ``available``: what its batches hold, less what
order lines and holds take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MovementKind = Literal[
    "batch_added", "batch_changed", "allocated", "deallocated", "hold_placed", "hold_ended"
]


@dataclass(frozen=True)
class Movement:
    """One change of a SKU's available units. ``seq`` counts the SKU's movements from 1
    with no gaps; ``qty`` is the signed change of ``available``; ``version`` is the
    product's version after the change that made it."""

    seq: int
    kind: MovementKind
    qty: int
    batchref: str | None
    version: int
    reason: str
    orderid: str | None = None
    holdid: str | None = None
