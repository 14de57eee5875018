"""How the relay waits for new outbox rows: PostgreSQL LISTEN/NOTIFY, or a plain poll."""

from __future__ import annotations

import logging
import select
import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from allocation.adapters import failover
from allocation.adapters.persistence.messaging_store import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)


class PollingWakeup:
    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def wait(self, timeout: float) -> None:
        self._stop.wait(timeout)

    def close(self) -> None:
        pass


class PostgresWakeup(PollingWakeup):
    """Returns as soon as a transaction that wrote to the outbox commits (or on timeout)."""

    def __init__(self, engine: Engine, stop: threading.Event) -> None:
        super().__init__(stop)
        self._engine = engine
        self._listening: PoolProxiedConnection | None = None

    def wait(self, timeout: float) -> None:
        try:
            connection = self._listening_connection()
            readable, _, _ = select.select([connection], [], [], timeout)
            if readable:
                connection.poll()
                connection.notifies.clear()
        except Exception as error:  # any failure falls back to polling, and reconnects next time
            if self._listening is not None:
                logger.warning("lost the LISTEN connection (%s); polling until it is back", error)
            else:
                logger.debug("LISTEN unavailable (%s); polling instead", error)
            self.close()
            super().wait(timeout)

    def _listening_connection(self) -> Any:
        """The psycopg2 connection that LISTENs, made on first use and again after it
        was lost: a LISTEN lives in its connection, so after a failover it is taken
        on the new primary, which the new connection reaches."""
        if self._listening is None:
            pooled = self._engine.raw_connection()
            driver = pooled.driver_connection
            assert driver is not None
            driver.autocommit = True
            with driver.cursor() as cursor:
                cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._listening = pooled
            where = failover.address(driver.info.host, driver.info.port)
            logger.info("listening for new outbox messages on %s", where)
        return self._listening.driver_connection

    def close(self) -> None:
        if self._listening is not None:
            try:
                self._listening.invalidate()
            except Exception:  # the connection is being thrown away either way
                logger.debug("closing the LISTEN connection failed", exc_info=True)
            self._listening = None
