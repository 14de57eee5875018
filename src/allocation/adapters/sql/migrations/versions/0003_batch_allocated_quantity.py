"""Batches keep their allocated quantity, so loading a batch never needs all its lines.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(
            sa.Column("allocated_quantity", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE batches SET allocated_quantity = COALESCE("
        "(SELECT SUM(qty) FROM allocations WHERE allocations.batch_id = batches.id), 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("allocated_quantity")
