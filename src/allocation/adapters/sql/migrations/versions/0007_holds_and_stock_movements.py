"""Holds, and the ledger of stock movements, opened with the stock already there.

Every existing product gets opening movements: one `batch_added` per batch (its
purchased quantity) and, for a batch with allocated lines, one `allocated` (minus
its allocated quantity), so that from the first upgrade the sum of a SKU's
movements is its available stock. The code is this revision's own: a migration
must keep doing what it did when the application changes.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    op.add_column(
        "batches", sa.Column("held_quantity", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "products", sa.Column("movement_seq", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column(
        "availability_view",
        sa.Column("held", sa.Integer(), nullable=False, server_default="0"),
    )
    _create_holds()
    movements = _create_movements()
    rows = _opening_movements(op.get_bind())
    if rows:
        op.bulk_insert(movements, rows)
        _number_products(op.get_bind(), rows)


def _create_holds() -> None:
    op.create_table(
        "holds",
        sa.Column("holdid", sa.String(length=255), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("batchref", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("orderid", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"]),
        sa.PrimaryKeyConstraint("holdid"),
    )
    op.create_index(
        "ix_holds_active_by_sku",
        "holds",
        ["sku"],
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )
    op.create_index(
        "ix_holds_active_expiry",
        "holds",
        ["expires_at"],
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )


def _create_movements() -> sa.Table:
    return op.create_table(
        "stock_movements",
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("batchref", sa.String(length=255), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("orderid", sa.String(length=255), nullable=True),
        sa.Column("holdid", sa.String(length=255), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sku", "seq"),
    )


def _opening_movements(connection: sa.Connection) -> list[dict[str, Any]]:
    """Each product's stock as movements, batch by batch, at its current version."""
    batches = connection.execute(
        sa.text(
            "SELECT p.sku, p.version_number, b.reference, b.purchased_quantity,"
            " b.allocated_quantity FROM products p JOIN batches b ON b.sku = p.sku"
            " ORDER BY p.sku, b.id"
        )
    ).all()
    now = datetime.now(UTC)
    source = json.dumps({"migration": revision})
    rows: list[dict[str, Any]] = []
    seq: dict[str, int] = {}
    for sku, version, ref, purchased, allocated in batches:
        opening = [("batch_added", int(purchased))]
        if allocated:
            opening.append(("allocated", -int(allocated)))
        for kind, qty in opening:
            seq[sku] = seq.get(sku, 0) + 1
            rows.append(
                {
                    "sku": sku,
                    "seq": seq[sku],
                    "at": now,
                    "kind": kind,
                    "qty": qty,
                    "batchref": ref,
                    "version": int(version),
                    "reason": "opening",
                    "source": source,
                }
            )
    return rows


def _number_products(connection: sa.Connection, rows: list[dict[str, Any]]) -> None:
    last: dict[str, int] = {}
    for row in rows:
        last[row["sku"]] = row["seq"]
    connection.execute(
        sa.text("UPDATE products SET movement_seq = :seq WHERE sku = :sku"),
        [{"sku": sku, "seq": seq} for sku, seq in last.items()],
    )


def downgrade() -> None:
    op.drop_table("stock_movements")
    op.drop_index("ix_holds_active_expiry", table_name="holds")
    op.drop_index("ix_holds_active_by_sku", table_name="holds")
    op.drop_table("holds")
    if op.get_bind().dialect.name == "sqlite":
        for table, column in (
            ("availability_view", "held"),
            ("products", "movement_seq"),
            ("batches", "held_quantity"),
        ):
            with op.batch_alter_table(table, recreate="always") as batch:
                batch.drop_column(column)
    else:
        op.drop_column("availability_view", "held")
        op.drop_column("products", "movement_seq")
        op.drop_column("batches", "held_quantity")
