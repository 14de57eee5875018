"""A product's versioned UPDATE raises when it changed no row, instead of reporting a count.

The writes of a change and its COMMIT travel in one round trip; only an error
stops the COMMIT behind them. The function raises serialization_failure
(40001), which the service already treats as "another change won: run it again".

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must match allocation.adapters.persistence.product_statements.EXPECT_ONE_ROW.
FUNCTION = "allocation_expect_one_row"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # elsewhere the row count is checked by the service
    op.execute(
        f"CREATE FUNCTION {FUNCTION}(changed bigint, what text) RETURNS integer "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "IF changed <> 1 THEN RAISE EXCEPTION 'stale %: % rows changed, not 1', what, changed "
        "USING ERRCODE = 'serialization_failure'; END IF; RETURN changed; END $$"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION {FUNCTION}(bigint, text)")
