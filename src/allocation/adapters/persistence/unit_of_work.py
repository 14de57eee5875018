"""The SQLAlchemy Unit of Work: one connection, one transaction, driver errors translated.

Products are read through a Session on that connection (the classical
mapping); every write is queued on a WriteBatch and sent at commit. On
PostgreSQL the connection sends its own BEGIN, in front of the first statement,
and the writes travel with COMMIT behind them: a change is two round trips, the
read and the write (``database.begin_with_next_statement``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from allocation.adapters.persistence.ledger import SqlAlchemyMovements
from allocation.adapters.persistence.messaging_store import (
    SqlAlchemyChangePositions,
    SqlAlchemyDeadLetters,
    SqlAlchemyOutbox,
    SqlAlchemyProcessedMessages,
)
from allocation.adapters.persistence.repository import SqlAlchemyRepository
from allocation.adapters.read_models.read_model import (
    SqlAlchemyAllocationsView,
    SqlAlchemyAvailabilityView,
)
from allocation.adapters.sql import database
from allocation.adapters.sql.statements import WriteBatch
from allocation.domain.exceptions import (
    CommitOutcomeUnknown,
    ConcurrencyConflict,
    ConnectionDropped,
    DatabaseUnavailable,
    SchemaNotMigrated,
)
from allocation.service_layer.product_changes import ProductChanges
from allocation.service_layer.unit_of_work import AbstractUnitOfWork


class SqlAlchemyUnitOfWork(AbstractUnitOfWork):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._engine = engine
        self.connection: Connection | None = None
        self.session: Session | None = None

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        try:
            self.connection = self._engine.connect()
        except sa_exc.DBAPIError as error:
            raise _translated(error) from error
        # No autoflush and no flush at all: the ORM only reads; writes are queued.
        self.session = Session(bind=self.connection, autoflush=False, expire_on_commit=False)
        self._writes = WriteBatch()
        self.products = self._repository = SqlAlchemyRepository(self.session, self.connection)
        self.allocations_view = SqlAlchemyAllocationsView(self.session, self._writes)
        self.availability_view = SqlAlchemyAvailabilityView(self.session, self._writes)
        self.outbox = SqlAlchemyOutbox(self.session, self._writes)
        self.processed_messages = SqlAlchemyProcessedMessages(self.session, self._writes)
        self.change_positions = SqlAlchemyChangePositions(self.session, self._writes)
        self.dead_letters = SqlAlchemyDeadLetters(self.session)
        self.movements = SqlAlchemyMovements(self.session, self._writes)
        # Last: from here on __exit__ runs, and puts the connection back as it found it.
        if database.makes_own_transactions(self._engine):
            database.begin_with_next_statement(self.connection)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            try:
                super().__exit__(exc_type, exc, tb)
            finally:
                self._close()
        except sa_exc.DBAPIError as cleanup_error:
            if exc is None:  # the connection went after the work, before the rollback
                translated = _translated(cleanup_error)
                if translated is cleanup_error:
                    raise
                raise translated from cleanup_error
            # Cleaning up after a lost connection fails too; the first error is the story.
        if isinstance(exc, sa_exc.DBAPIError):
            translated = _translated(exc)
            if translated is not exc:
                raise translated from exc

    def _commit(self, changes: Sequence[ProductChanges]) -> None:
        connection = self.connection
        assert connection is not None, "use the Unit of Work as a context manager"
        # A driver error gets the domain's name as it leaves the `with` block (__exit__).
        self._repository.write_changes(changes, self._writes)
        if not database.explicit_transactions(connection):
            if not self._writes.send(connection):
                raise ConcurrencyConflict("version changed")
            _with_outcome_unknown_on_loss(connection.commit)
            return
        if self._writes or database.in_explicit_transaction(connection):
            # A stale version raises in the round trip, and the COMMIT behind it never runs.
            _with_outcome_unknown_on_loss(lambda: self._writes.send(connection, then="COMMIT"))
            database.transaction_ended(connection)
        connection.commit()  # the Connection's own bookkeeping: the driver sends nothing

    def _rollback(self) -> None:
        connection = self.connection
        if connection is None:
            return
        if not connection.invalidated and database.in_explicit_transaction(connection):
            connection.exec_driver_sql("ROLLBACK")
            database.transaction_ended(connection)
        if connection.in_transaction():
            connection.rollback()

    def _close(self) -> None:
        if self.session is not None:
            self.session.close()
        connection = self.connection
        if connection is not None:
            if connection.invalidated:
                pass  # the pool throws its driver connection away
            elif database.in_explicit_transaction(connection):
                connection.invalidate()  # its ROLLBACK failed: hand no open transaction on
            else:
                database.stop_explicit_transactions(connection)
            connection.close()


def _with_outcome_unknown_on_loss(commit: Callable[[], object]) -> None:
    """Runs what sends COMMIT; a connection lost meanwhile (it may have committed
    before the loss) is a CommitOutcomeUnknown."""
    try:
        commit()
    except sa_exc.DBAPIError as error:
        if database.is_unavailable(error) and not database.answered_before_commit(error):
            raise CommitOutcomeUnknown(str(error.orig)) from error
        raise


def _translated(error: sa_exc.DBAPIError) -> Exception:
    """The domain's name for a driver error, or the error itself when it is a bug."""
    if database.is_missing_schema(error):
        return SchemaNotMigrated(str(error.orig).splitlines()[0])
    if database.is_unavailable(error):
        if error.connection_invalidated:
            return ConnectionDropped(str(error.orig))
        return DatabaseUnavailable(str(error.orig))
    if database.is_conflict(error):
        return ConcurrencyConflict(type(error.orig).__name__)
    return error
