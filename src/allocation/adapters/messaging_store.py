"""SQLAlchemy implementations of the outbox, processed-message and dead-letter ports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from allocation.adapters import database, orm
from allocation.service_layer.messages import OutboxMessage
from allocation.service_layer.ports import (
    AbstractDeadLetters,
    AbstractOutbox,
    AbstractProcessedMessages,
    Backlog,
    DeadLetter,
)

# A trigger on the outbox table (migration 0004) notifies this channel at commit.
NOTIFY_CHANNEL = "allocation_outbox"
# Any fixed number: the relay holds this lock while it publishes a batch, so two
# relays never interleave and each SKU's messages leave in commit order.
RELAY_LOCK_KEY = 4_711_001


_OUTBOX_INSERT = insert(orm.outbox)


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


class SqlAlchemyOutbox(AbstractOutbox):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, message: OutboxMessage) -> None:
        self.session.connection().execute(
            _OUTBOX_INSERT,
            {
                "message_id": message.message_id,
                "channel": message.channel,
                "sku": message.sku,
                "payload": json.dumps(message.payload),
                "occurred_at": message.occurred_at,
            },
        )

    def pending(self, limit: int) -> list[OutboxMessage]:
        if (
            database.is_postgresql(self.session)
            and not self.session.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY}
            ).scalar_one()
        ):
            return []
        rows = self.session.execute(
            select(orm.outbox)
            .where(orm.outbox.c.sent_at.is_(None))
            .order_by(orm.outbox.c.id)
            .limit(limit)
        )
        return [
            OutboxMessage(
                row.message_id,
                row.channel,
                row.sku,
                json.loads(row.payload),
                _utc(row.occurred_at),
                id=row.id,
            )
            for row in rows
        ]

    def mark_sent(self, ids: Sequence[int]) -> None:
        self.session.execute(
            update(orm.outbox).where(orm.outbox.c.id.in_(ids)).values(sent_at=datetime.now(UTC))
        )

    def prune(self, sent_before: datetime) -> int:
        result = self.session.execute(delete(orm.outbox).where(orm.outbox.c.sent_at < sent_before))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def backlog(self) -> Backlog:
        row = self.session.execute(
            select(func.count(), func.min(orm.outbox.c.occurred_at)).where(
                orm.outbox.c.sent_at.is_(None)
            )
        ).one()
        return Backlog(unsent=int(row[0]), oldest=_utc_or_none(row[1]))


class SqlAlchemyProcessedMessages(AbstractProcessedMessages):
    def __init__(self, session: Session) -> None:
        self.session = session

    def contains(self, message_id: str) -> bool:
        table = orm.processed_messages
        found = self.session.execute(
            select(table.c.message_id).where(table.c.message_id == message_id)
        ).first()
        return found is not None

    def add(self, message_id: str) -> None:
        self.session.execute(
            insert(orm.processed_messages).values(
                message_id=message_id, processed_at=datetime.now(UTC)
            )
        )


class SqlAlchemyDeadLetters(AbstractDeadLetters):
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, letter: DeadLetter) -> None:
        self.session.execute(
            insert(orm.dead_letters).values(
                source=letter.source,
                payload=letter.payload,
                error=letter.error,
                message_id=letter.message_id,
                created_at=letter.created_at,
            )
        )

    def list(self, include_redriven: bool = False) -> Sequence[DeadLetter]:
        query = select(orm.dead_letters).order_by(orm.dead_letters.c.id)
        if not include_redriven:
            query = query.where(orm.dead_letters.c.redriven_at.is_(None))
        return [self._letter(row) for row in self.session.execute(query)]

    def get(self, letter_id: int) -> DeadLetter | None:
        row = self.session.execute(
            select(orm.dead_letters).where(orm.dead_letters.c.id == letter_id)
        ).first()
        return None if row is None else self._letter(row)

    def mark_redriven(self, letter_id: int, at: datetime) -> None:
        self.session.execute(
            update(orm.dead_letters)
            .where(orm.dead_letters.c.id == letter_id)
            .values(redriven_at=at)
        )

    @staticmethod
    def _letter(row: object) -> DeadLetter:
        m = row._mapping  # type: ignore[attr-defined]
        return DeadLetter(
            m["id"],
            m["source"],
            m["payload"],
            m["error"],
            m["message_id"],
            _utc(m["created_at"]),
            _utc_or_none(m["redriven_at"]),
        )
