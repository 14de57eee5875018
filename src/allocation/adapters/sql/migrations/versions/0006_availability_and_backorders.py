"""Backorders, the time each line was accepted, and the availability read model.

The availability view is filled from the batches already there, so an upgraded
database answers `GET /availability/<sku>` at once. The code is this revision's
own: a migration must keep doing what it did when the application changes.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    _add_columns()
    op.create_table(
        "backorders",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("orderid", sa.String(length=255), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("orderid", "sku", name="uq_backorders_orderid_sku"),
    )
    op.create_index("ix_backorders_sku_since", "backorders", ["sku", "since", "id"])
    view = op.create_table(
        "availability_view",
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("backordered", sa.Integer(), nullable=False),
        sa.Column("slots", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("sku"),
    )
    rows = _availability_rows(op.get_bind())
    if rows:
        op.bulk_insert(view, rows)


def _add_columns() -> None:
    accepted_at = sa.Column(
        "accepted_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )
    backordered = sa.Column(
        "backordered_quantity", sa.Integer(), nullable=False, server_default="0"
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot add a column whose default is not a constant: copy the table.
        with op.batch_alter_table("allocations", recreate="always") as table:
            table.add_column(accepted_at)
    else:
        op.add_column("allocations", accepted_at)
    op.add_column("products", backordered)


def _availability_rows(connection: sa.Connection) -> list[dict[str, Any]]:
    """One row per product: its batches' free units, warehouse first, then by ETA."""
    batches = connection.execute(
        sa.text("SELECT sku, eta, purchased_quantity - allocated_quantity, id FROM batches")
    ).all()
    slots: dict[str, list[tuple[Any, int, int]]] = defaultdict(list)
    for sku, eta, free, batch_id in batches:
        slots[sku].append((eta, int(free), int(batch_id)))
    products = connection.execute(sa.text("SELECT sku, version_number FROM products")).all()
    return [
        {
            "sku": sku,
            "version": int(version),
            "backordered": 0,
            "slots": json.dumps(
                [[_day(eta), free] for eta, free, _ in sorted(slots[sku], key=_choice)]
            ),
        }
        for sku, version in products
    ]


def _choice(slot: tuple[Any, int, int]) -> tuple[bool, str, int]:
    eta, _free, batch_id = slot
    return (eta is not None, _day(eta) or "", batch_id)


def _day(eta: Any) -> str | None:
    """SQLite hands dates back as text, PostgreSQL as dates."""
    if eta is None:
        return None
    return eta if isinstance(eta, str) else str(eta.isoformat())


def downgrade() -> None:
    op.drop_table("availability_view")
    op.drop_index("ix_backorders_sku_since", table_name="backorders")
    op.drop_table("backorders")
    op.drop_column("products", "backordered_quantity")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("allocations", recreate="always") as table:
            table.drop_column("accepted_at")
    else:
        op.drop_column("allocations", "accepted_at")
