"""The SQLAlchemy Unit of Work: one session, one transaction, driver errors translated."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from allocation.adapters.repository import SqlAlchemyAllocationsView, SqlAlchemyRepository
from allocation.domain.exceptions import ConcurrencyConflict
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
        return self

    def __exit__(self, *args: object) -> None:
        super().__exit__(*args)  # type: ignore[arg-type]
        if self.session is not None:
            self.session.close()

    def _commit(self) -> None:
        assert self.session is not None, "use the Unit of Work as a context manager"
        try:
            self.session.commit()
        except StaleDataError as error:
            self.session.rollback()
            raise ConcurrencyConflict("version changed") from error
        except sa_exc.DBAPIError as error:
            self.session.rollback()
            if _is_conflict(error):
                raise ConcurrencyConflict(type(error.orig).__name__) from error
            raise

    def _rollback(self) -> None:
        if self.session is not None:
            self.session.rollback()


def _is_conflict(error: sa_exc.DBAPIError) -> bool:
    """Unique violations, serialization failures and deadlocks resolve on retry."""
    sqlstate = getattr(error.orig, "pgcode", None)
    if sqlstate in _CONFLICT_SQLSTATES:
        return True
    message = str(error.orig).lower()
    # SQLite reports a lost write race as a lock or a uniqueness failure.
    return "database is locked" in message or "unique constraint failed" in message
