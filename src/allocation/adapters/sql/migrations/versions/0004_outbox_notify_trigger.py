"""PostgreSQL wakes the relay itself when outbox rows are inserted.

A statement-level trigger calls pg_notify, delivered at commit, instead of the
service sending NOTIFY in a round trip of its own on every write.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must match allocation.adapters.persistence.messaging_store.NOTIFY_CHANNEL.
CHANNEL = "allocation_outbox"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # elsewhere the relay polls
    op.execute(
        "CREATE FUNCTION allocation_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION allocation_outbox_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION allocation_outbox_notify()")
