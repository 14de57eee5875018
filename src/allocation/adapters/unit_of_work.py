"""The SQLAlchemy Unit of Work: one session, one transaction, driver errors translated."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from allocation.adapters.messaging_store import (
    SqlAlchemyDeadLetters,
    SqlAlchemyOutbox,
    SqlAlchemyProcessedMessages,
)
from allocation.adapters.repository import SqlAlchemyAllocationsView, SqlAlchemyRepository
from allocation.domain.exceptions import ConcurrencyConflict, DatabaseUnavailable
from allocation.service_layer.unit_of_work import AbstractUnitOfWork

# PostgreSQL SQLSTATEs that mean "another transaction got there first".
_CONFLICT_SQLSTATES = {"23505", "40001", "40P01"}


class SqlAlchemyUnitOfWork(AbstractUnitOfWork):
    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        super().__init__()
        self._session_factory = session_factory
        self.session: Session | None = None

    def __enter__(self) -> SqlAlchemyUnitOfWork:
        self.session = self._session_factory()
        self.products = SqlAlchemyRepository(self.session)
        self.allocations_view = SqlAlchemyAllocationsView(self.session)
        self.outbox = SqlAlchemyOutbox(self.session)
        self.processed_messages = SqlAlchemyProcessedMessages(self.session)
        self.dead_letters = SqlAlchemyDeadLetters(self.session)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
            if self.session is not None:
                self.session.close()
        except sa_exc.DBAPIError:
            if exc is None:
                raise
            # Cleaning up after a lost connection fails too; the first error is the story.
        if isinstance(exc, sa_exc.DBAPIError):
            if _is_unavailable(exc):
                raise DatabaseUnavailable(str(exc.orig)) from exc
            if _is_conflict(exc):
                raise ConcurrencyConflict(type(exc.orig).__name__) from exc

    def _commit(self) -> None:
        assert self.session is not None, "use the Unit of Work as a context manager"
        try:
            self.session.commit()
        except StaleDataError as error:
            self.session.rollback()
            raise ConcurrencyConflict("version changed") from error
        except sa_exc.DBAPIError as error:
            if _is_unavailable(error):
                raise DatabaseUnavailable(str(error.orig)) from error
            self.session.rollback()
            if _is_conflict(error):
                raise ConcurrencyConflict(type(error.orig).__name__) from error
            raise

    def _rollback(self) -> None:
        if self.session is not None:
            self.session.rollback()


def _is_unavailable(error: sa_exc.DBAPIError) -> bool:
    """Lost or refused connections, as opposed to errors in what we asked."""
    if error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.InterfaceError):
        return True
    if isinstance(error, sa_exc.OperationalError):
        sqlstate = getattr(error.orig, "pgcode", None)
        # No SQLSTATE: the driver never reached the server. Class 08: connection
        # exception; 57P0x: the server is shutting down or cannot accept connections.
        if sqlstate is None:
            return "database is locked" not in str(error.orig)
        return str(sqlstate).startswith(("08", "57P"))
    return False


def _is_conflict(error: sa_exc.DBAPIError) -> bool:
    """Unique violations, serialization failures and deadlocks resolve on retry."""
    sqlstate = getattr(error.orig, "pgcode", None)
    if sqlstate in _CONFLICT_SQLSTATES:
        return True
    message = str(error.orig).lower()
    # SQLite reports a lost write race as a lock or a uniqueness failure.
    return "database is locked" in message or "unique constraint failed" in message
