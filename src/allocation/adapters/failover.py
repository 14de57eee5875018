"""Which database and Redis servers this process reaches, and when that changes.

A new connection that reaches another server than the one before is a failover
seen by this process: logged once and counted, whichever engine, pool or thread
made the connection. Nothing here runs per request: only when a connection is made.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from redis.sentinel import SentinelConnectionPool

from allocation.adapters import metrics

logger = logging.getLogger(__name__)


class ServerWatch:
    """The address of the server a process last reached in one role."""

    def __init__(self, role: str, failovers: Any) -> None:
        self.role = role
        self._failovers = failovers
        self._lock = threading.Lock()
        self.address: str | None = None

    def reached(self, address: str) -> None:
        """Notes the server a new connection reached; a change is logged and counted."""
        with self._lock:
            previous, self.address = self.address, address
        if previous is None:
            logger.info("the %s is %s", self.role, address)
        elif previous != address:
            logger.warning("the %s is now %s (was %s): failed over", self.role, address, previous)
            self._failovers.inc()


DATABASE = ServerWatch("database primary", metrics.DATABASE_FAILOVERS)
REDIS = ServerWatch("Redis master", metrics.REDIS_FAILOVERS)


def address(host: str, port: int | str) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def redis_master(client: redis.Redis) -> tuple[str, int] | None:
    """The master the Sentinels name now (a round trip to one of them); None for the
    client of one plain Redis. Raises redis.ConnectionError when none names one."""
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return None
    master: tuple[str, int] = pool.get_master_address()  # type: ignore[no-untyped-call]
    return master


def note_redis_master(client: redis.Redis) -> None:
    """After a command succeeded: the master it reached, if Sentinels chose it, as the
    client's pool learned it when it connected (no round trip)."""
    pool = client.connection_pool
    master = pool.master_address if isinstance(pool, SentinelConnectionPool) else None
    if master is not None and address(*master) != REDIS.address:
        REDIS.reached(address(*master))
