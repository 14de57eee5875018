"""Domain errors. They carry no HTTP: the entrypoints map them to status codes in one table."""

from __future__ import annotations


class AllocationError(Exception):
    """Base class of every error the service raises on purpose."""


class InvalidSku(AllocationError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"Invalid sku {sku}")
        self.sku = sku


class OutOfStockError(AllocationError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"Out of stock for sku {sku}")
        self.sku = sku


class DuplicateBatch(AllocationError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"Batch {ref} already exists")
        self.ref = ref


class UnknownBatch(AllocationError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"Unknown batch {ref}")
        self.ref = ref


class UnknownLine(AllocationError):
    """The order has no line (allocated or waiting) for the SKU."""

    def __init__(self, orderid: str, sku: str) -> None:
        super().__init__(f"Order {orderid} has no line for sku {sku}")
        self.orderid = orderid
        self.sku = sku


class UnknownOrder(AllocationError):
    """The order has no lines, allocated or waiting."""

    def __init__(self, orderid: str) -> None:
        super().__init__(f"Order {orderid} has no lines")
        self.orderid = orderid


class LineConflict(AllocationError):
    """The same order and SKU was already allocated with a different quantity."""

    def __init__(self, orderid: str, sku: str, allocated_qty: int) -> None:
        super().__init__(
            f"Order {orderid} already has sku {sku} allocated with qty {allocated_qty}"
        )
        self.orderid = orderid
        self.sku = sku


class UnknownHold(AllocationError):
    def __init__(self, holdid: str) -> None:
        super().__init__(f"Unknown hold {holdid}")
        self.holdid = holdid


class HoldConflict(AllocationError):
    """The hold cannot do what was asked in the state it is in (ended, past its expiry,
    or placed for another SKU or quantity); nothing changed."""

    def __init__(self, holdid: str, why: str) -> None:
        super().__init__(f"Hold {holdid} {why}")
        self.holdid = holdid


class ConcurrencyConflict(AllocationError):
    """Another transaction changed the same product first; the change was rolled back."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "The product was changed by another request at the same time; please retry"
            + (f" ({detail})" if detail else "")
        )


class InfrastructureUnavailable(AllocationError):
    """A backing service cannot be reached; the operation may succeed later."""


class DatabaseUnavailable(InfrastructureUnavailable):
    def __init__(self, detail: str = "") -> None:
        super().__init__("The database is unavailable; please retry shortly")
        self.detail = detail


class SchemaNotMigrated(InfrastructureUnavailable):
    """The database's schema is missing or behind this code: not an outage, and
    `allocation migrate` is the cure. The message (what clients see) names no
    database; ``explained`` (for the operator) says which and how far behind."""

    def __init__(self, state: str = "", where: str = "") -> None:
        super().__init__("The database schema is not migrated: run `allocation migrate`")
        self.state = state
        self.where = where

    @property
    def explained(self) -> str:
        context = ", ".join(
            part for part in (self.state, f"at {self.where}" if self.where else "") if part
        )
        inside = f" ({context})" if context else ""
        return f"the database schema is not migrated{inside}: run `allocation migrate`"


class ConnectionDropped(DatabaseUnavailable):
    """A pooled connection had been closed by the database (a restart, a failover).

    Raised only before COMMIT was sent, so nothing of the command was made; the
    pool replaces its connections, and running the command again at once works.
    (A connection lost during COMMIT is a CommitOutcomeUnknown instead.)
    """


class CommitOutcomeUnknown(DatabaseUnavailable):
    """The connection died while the database committed: the change may have been
    made or not, and only asking again can tell. Never run again by the service
    itself (a repeated change that had been made would be refused as a new one);
    the caller repeats it and reads the answer (README, "Running highly available")."""

    def __init__(self, detail: str = "") -> None:
        InfrastructureUnavailable.__init__(
            self,
            "The database connection was lost while committing; the change may have"
            " been made: repeat the request to know",
        )
        self.detail = detail


class BrokerUnavailable(InfrastructureUnavailable):
    def __init__(self, detail: str = "") -> None:
        super().__init__("Redis is unavailable")
        self.detail = detail


class PublishUnconfirmed(BrokerUnavailable):
    """Redis took the messages but no replica confirmed having them in time: a master
    lost now would lose them, so they are published again."""

    def __init__(self, detail: str = "") -> None:
        InfrastructureUnavailable.__init__(self, "No Redis replica confirmed the messages")
        self.detail = detail
