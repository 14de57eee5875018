"""Classical (imperative) mapping: the domain classes stay plain Python; the tables live here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry, relationship

from allocation.domain import model
from allocation.domain.holds import Hold

NAME_LENGTH = 255
# SQLite only auto-increments an INTEGER PRIMARY KEY.
_BigId = BigInteger().with_variant(Integer, "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A moment, stored in UTC and read back aware on every database (SQLite keeps
    no offset), so the domain can compare places in the queue wherever it runs."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


metadata = MetaData()
mapper_registry = registry(metadata=metadata)

products = Table(
    "products",
    metadata,
    Column("sku", String(NAME_LENGTH), primary_key=True),
    Column("version_number", Integer, nullable=False, server_default="0"),
    # Units of the lines waiting for stock: what a partial load cannot count itself.
    Column("backordered_quantity", Integer, nullable=False, server_default="0"),
    # The number of the SKU's last stock movement: the next one is one more.
    Column("movement_seq", Integer, nullable=False, server_default="0"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reference", String(NAME_LENGTH), nullable=False, unique=True),
    Column("sku", ForeignKey("products.sku"), nullable=False, index=True),
    Column("purchased_quantity", Integer, nullable=False),
    Column("allocated_quantity", Integer, nullable=False, server_default="0"),
    Column("held_quantity", Integer, nullable=False, server_default="0"),
    Column("eta", Date, nullable=True),
)

# One row per allocated order line: the unique (orderid, sku) is what makes
# "a line is in at most one batch" true in the database as well as in the model.
allocations = Table(
    "allocations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", ForeignKey("batches.id"), nullable=False, index=True),
    Column("orderid", String(NAME_LENGTH), nullable=False),
    Column("sku", String(NAME_LENGTH), nullable=False),
    Column("qty", Integer, nullable=False),
    # When the line was first accepted: its place in the queue if it has to wait.
    Column("accepted_at", UtcDateTime, nullable=False, server_default=func.now()),
    UniqueConstraint("orderid", "sku", name="uq_allocations_orderid_sku"),
)

# Order lines waiting for stock, served oldest first. An order's line for a SKU is
# in exactly one of allocations and backorders (the handlers move it in one change).
backorders = Table(
    "backorders",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("orderid", String(NAME_LENGTH), nullable=False),
    Column("sku", ForeignKey("products.sku"), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("since", UtcDateTime, nullable=False),
    UniqueConstraint("orderid", "sku", name="uq_backorders_orderid_sku"),
)
Index("ix_backorders_sku_since", backorders.c.sku, backorders.c.since, backorders.c.id)

# Stock set aside for checkouts, in every state: an ended hold stays, so that a
# retried request is recognised and GET /holds/<holdid> can say how it ended.
holds = Table(
    "holds",
    metadata,
    Column("holdid", String(NAME_LENGTH), primary_key=True),
    Column("sku", ForeignKey("products.sku"), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("batchref", String(NAME_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("placed_at", UtcDateTime, nullable=False),
    Column("orderid", String(NAME_LENGTH), nullable=True),
)
# A SKU's active holds (a shrinking batch hands them on): partial, so that the loads
# that name one hold by id always take the primary key (a generic plan once chose
# an index of every hold of the SKU, ended ones included, and slowed as they grew).
Index(
    "ix_holds_active_by_sku",
    holds.c.sku,
    postgresql_where=holds.c.status == "active",
    sqlite_where=holds.c.status == "active",
)
# The expiry worker's question, "which active holds are past their time?", from a
# small index of the active ones.
Index(
    "ix_holds_active_expiry",
    holds.c.expires_at,
    postgresql_where=holds.c.status == "active",
    sqlite_where=holds.c.status == "active",
)

# The ledger: one row per change of a SKU's available stock, only ever added. No
# foreign key: a new product's first movements are written before its row, in the
# same round trip.
stock_movements = Table(
    "stock_movements",
    metadata,
    Column("sku", String(NAME_LENGTH), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("qty", Integer, nullable=False),
    Column("batchref", String(NAME_LENGTH), nullable=True),
    Column("version", Integer, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("orderid", String(NAME_LENGTH), nullable=True),
    Column("holdid", String(NAME_LENGTH), nullable=True),
    Column("source", Text, nullable=False),  # JSON: what caused it
)

allocations_view = Table(
    "allocations_view",
    metadata,
    Column("orderid", String(NAME_LENGTH), primary_key=True),
    Column("sku", String(NAME_LENGTH), primary_key=True),
    Column("batchref", String(NAME_LENGTH), nullable=False),
)

# The availability read model: one row per SKU, replaced with every change of its
# product. ``slots`` is JSON, [[eta or null, free units], …], in the order an
# allocation chooses batches (warehouse first, then earliest ETA).
availability_view = Table(
    "availability_view",
    metadata,
    Column("sku", String(NAME_LENGTH), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("backordered", Integer, nullable=False),
    Column("slots", Text, nullable=False),
    Column("held", Integer, nullable=False, server_default="0"),
)


outbox = Table(
    "outbox",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False, unique=True),
    Column("channel", String(64), nullable=False),
    Column("sku", String(NAME_LENGTH), nullable=False),
    Column("payload", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=True),
)
# The relay's question, "oldest unsent first", answered from a small index.
Index(
    "ix_outbox_unsent",
    outbox.c.id,
    postgresql_where=outbox.c.sent_at.is_(None),
    sqlite_where=outbox.c.sent_at.is_(None),
)
Index("ix_outbox_sent_at", outbox.c.sent_at)

processed_messages = Table(
    "processed_messages",
    metadata,
    Column("message_id", String(NAME_LENGTH), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)

# Where the last change applied to each batch stood in its producer's order.
batch_change_positions = Table(
    "batch_change_positions",
    metadata,
    Column("batchref", String(NAME_LENGTH), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("key", String(64), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("message_id", String(NAME_LENGTH), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("redriven_at", DateTime(timezone=True), nullable=True),
)


def start_mappers() -> None:
    """Maps the domain classes; safe to call more than once per process.

    The mapping is how products are read (repository.py says which parts each
    load fills in); the ORM never writes them: the repository turns changes into
    statements of its own. Collections a load did not fill in raise when
    touched, so no code can lean on lines that were never read.
    """
    if mapper_registry.mappers:
        return
    mapper_registry.map_imperatively(model.OrderLine, allocations)
    mapper_registry.map_imperatively(
        model.Batch,
        batches,
        properties={
            "_purchased_quantity": batches.c.purchased_quantity,
            "_allocated_quantity": batches.c.allocated_quantity,
            "_held_quantity": batches.c.held_quantity,
            "_allocations": relationship(model.OrderLine, collection_class=set, lazy="raise"),
        },
    )
    mapper_registry.map_imperatively(model.Backorder, backorders)
    mapper_registry.map_imperatively(Hold, holds)
    mapper_registry.map_imperatively(
        model.Product,
        products,
        properties={
            "batches": relationship(model.Batch, lazy="raise", order_by=batches.c.id),
            "backorders": relationship(model.Backorder, lazy="raise", order_by=backorders.c.id),
            "holds": relationship(Hold, lazy="raise", order_by=holds.c.placed_at),
        },
    )
    event.listen(model.Product, "load", _init_events)


def clear_mappers() -> None:
    mapper_registry.dispose()


def _init_events(product: model.Product, _context: Any) -> None:
    product.events = []
    product.movements = []
