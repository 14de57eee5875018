"""Initial schema: products, batches, allocations and the allocations_view read model.

These are the tables metadata.create_all made before Alembic owned the schema;
such a database is stamped with this revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 09:04:01.839660

"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("version_number", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("sku"),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reference", sa.String(length=255), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("purchased_quantity", sa.Integer(), nullable=False),
        sa.Column("eta", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["sku"], ["products.sku"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reference"),
    )
    op.create_index(op.f("ix_batches_sku"), "batches", ["sku"], unique=False)
    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("orderid", sa.String(length=255), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("qty", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("orderid", "sku", name="uq_allocations_orderid_sku"),
    )
    op.create_index(op.f("ix_allocations_batch_id"), "allocations", ["batch_id"], unique=False)
    op.create_table(
        "allocations_view",
        sa.Column("orderid", sa.String(length=255), nullable=False),
        sa.Column("sku", sa.String(length=255), nullable=False),
        sa.Column("batchref", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("orderid", "sku"),
    )


def downgrade() -> None:
    op.drop_table("allocations_view")
    op.drop_index(op.f("ix_allocations_batch_id"), table_name="allocations")
    op.drop_table("allocations")
    op.drop_index(op.f("ix_batches_sku"), table_name="batches")
    op.drop_table("batches")
    op.drop_table("products")
