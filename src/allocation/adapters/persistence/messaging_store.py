"""SQLAlchemy implementations of the outbox, processed-message and dead-letter ports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Integer, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from allocation.adapters.sql import orm
from allocation.adapters.sql.statements import (
    WriteBatch,
    columns_as_params,
    param,
    statement,
    upsert,
)
from allocation.domain.commands import Position
from allocation.service_layer.messages import OutboxMessage
from allocation.service_layer.ports import (
    AbstractChangePositions,
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


_O = orm.outbox
_KEY = param("lock_key", BigInteger)
OUTBOX_INSERT = statement(
    "insert_outbox_message",
    insert(_O)
    .values(**columns_as_params(_O, ("message_id", "channel", "sku", "payload", "occurred_at")))
    .inline(),
)
_PENDING_COLUMNS = (
    _O.c.id,
    _O.c.message_id,
    _O.c.channel,
    _O.c.sku,
    _O.c.payload,
    _O.c.occurred_at,
)
_LIMIT = param("limit", Integer)
OUTBOX_PENDING = statement(
    "pending_outbox_messages",
    # The advisory lock is a one-time filter: another relay holding it means no rows.
    select(*_PENDING_COLUMNS)
    .where(_O.c.sent_at.is_(None), select(func.pg_try_advisory_xact_lock(_KEY)).scalar_subquery())
    .order_by(_O.c.id)
    .limit(_LIMIT),
    select(*_PENDING_COLUMNS).where(_O.c.sent_at.is_(None)).order_by(_O.c.id).limit(_LIMIT),
)
# Not a prepared statement: planned afresh for each batch of ids. A prepared one may
# keep, after its fifth run, a generic plan made while the outbox was nearly empty:
# a scan of the whole table, which grew with every message (measured: 1.7 ms a
# batch after 9,000 messages, 12.9 ms after 31,000, slowing every writer).
_MARK_SENT = update(_O).values(sent_at=bindparam("sent_at"))
PROCESSED_INSERT = statement(
    "insert_processed_message",
    insert(orm.processed_messages).values(
        **columns_as_params(orm.processed_messages, ("message_id", "processed_at"))
    ),
)


_POSITIONS = orm.batch_change_positions


POSITION_UPSERT = upsert(
    "record_change_position",
    _POSITIONS,
    keys=("batchref",),
    columns=("batchref", "kind", "key", "changed_at"),
)


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)


class SqlAlchemyOutbox(AbstractOutbox):
    def __init__(self, session: Session, writes: WriteBatch) -> None:
        self.session = session
        self._writes = writes

    def add(self, message: OutboxMessage) -> None:
        self._writes.add(
            OUTBOX_INSERT,
            {
                "message_id": message.message_id,
                "channel": message.channel,
                "sku": message.sku,
                "payload": json.dumps(message.payload),
                "occurred_at": message.occurred_at,
            },
        )

    def pending(self, limit: int) -> list[OutboxMessage]:
        params = {"lock_key": RELAY_LOCK_KEY, "limit": limit}  # SQLite's takes no lock
        rows = OUTBOX_PENDING.execute(self.session.connection(), params)
        return [
            OutboxMessage(
                message_id, channel, sku, json.loads(payload), _utc(occurred_at), id=row_id
            )
            for row_id, message_id, channel, sku, payload, occurred_at in rows
        ]

    def mark_sent(self, ids: Sequence[int]) -> None:
        marked = _MARK_SENT.where(_O.c.id.in_(list(ids)))
        self.session.execute(marked, {"sent_at": datetime.now(UTC)})

    def prune(self, sent_before: datetime) -> int:
        result = self.session.execute(delete(_O).where(_O.c.sent_at < sent_before))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def backlog(self) -> Backlog:
        row = self.session.execute(
            select(func.count(), func.min(_O.c.occurred_at)).where(_O.c.sent_at.is_(None))
        ).one()
        return Backlog(unsent=int(row[0]), oldest=_utc_or_none(row[1]))


class SqlAlchemyProcessedMessages(AbstractProcessedMessages):
    def __init__(self, session: Session, writes: WriteBatch) -> None:
        self.session = session
        self._writes = writes

    def contains(self, message_id: str) -> bool:
        table = orm.processed_messages
        found = self.session.execute(
            select(table.c.message_id).where(table.c.message_id == message_id)
        ).first()
        return found is not None

    def add(self, message_id: str) -> None:
        self._writes.add(
            PROCESSED_INSERT, {"message_id": message_id, "processed_at": datetime.now(UTC)}
        )


class SqlAlchemyChangePositions(AbstractChangePositions):
    def __init__(self, session: Session, writes: WriteBatch) -> None:
        self.session = session
        self._writes = writes

    def last(self, batchref: str) -> Position | None:
        row = self.session.execute(
            select(_POSITIONS.c.kind, _POSITIONS.c.key).where(_POSITIONS.c.batchref == batchref)
        ).first()
        return None if row is None else Position(row[0], row[1])

    def record(self, batchref: str, position: Position) -> None:
        self._writes.add(
            POSITION_UPSERT,
            {
                "batchref": batchref,
                "kind": position.kind,
                "key": position.key,
                "changed_at": datetime.now(UTC),
            },
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
