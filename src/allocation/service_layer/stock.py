"""Use cases over the stock that no request starts: expiring holds whose time is up,
and checking the ledger of movements against the stock."""

from __future__ import annotations

from dataclasses import dataclass

from allocation.domain import commands
from allocation.service_layer.handlers import Clock
from allocation.service_layer.messagebus import MessageBus, UnitOfWorkFactory

# What the expiry worker names as the cause of the movements it makes.
EXPIRY = {"expiry": True}
# SKUs looked at per round: a round stays short, and the next one takes the rest.
SKUS_PER_ROUND = 100


def expire_due_holds(bus: MessageBus, uow_factory: UnitOfWorkFactory, clock: Clock) -> int:
    """Expires the holds whose time is up, one SKU per transaction; returns how many.
    Several processes may do this at once: each hold is expired exactly once (the
    product's lock and version decide), and a SKU another process has just done
    changes nothing."""
    with uow_factory() as uow:
        skus = uow.products.skus_with_due_holds(clock(), SKUS_PER_ROUND)
    return sum(int(bus.handle(commands.ExpireHolds(sku), EXPIRY)) for sku in skus)


@dataclass(frozen=True)
class Disagreement:
    """A SKU whose movements do not add up to its available stock."""

    sku: str
    movements: int  # the sum of its movements
    available: int  # what its batches hold, less lines and holds

    def __str__(self) -> str:
        return f"{self.sku}: movements add up to {self.movements}, available is {self.available}"


@dataclass(frozen=True)
class LedgerCheck:
    checked: int  # SKUs looked at
    disagreements: list[Disagreement]


def check_movements(uow_factory: UnitOfWorkFactory, sku: str | None = None) -> LedgerCheck:
    """Each SKU (or only ``sku``) whose movements' sum differs from its available stock.
    Products are share-locked while read, so no change lands between the two reads."""
    with uow_factory() as uow:
        available = {
            a.sku: a.available for a in uow.products.availabilities() if sku is None or a.sku == sku
        }
        sums = uow.movements.sums(sku)
    skus = sorted(available.keys() | sums.keys())
    disagreements = [
        Disagreement(name, sums.get(name, 0), available.get(name, 0))
        for name in skus
        if sums.get(name, 0) != available.get(name, 0)
    ]
    return LedgerCheck(len(skus), disagreements)
