"""Readiness: can this process reach what it needs right now, and which servers?"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import Engine

from allocation.adapters import failover
from allocation.adapters.sql import database

OK = "ok"


@dataclass(frozen=True)
class Readiness:
    """Each dependency's state ("ok", "not configured", or what is wrong), and the
    servers reached: the database's, with whether it is a primary, and the Redis
    master the Sentinels named (when REDIS_URL names Sentinels)."""

    checks: dict[str, str]
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)


class ReadinessProbe:
    def __init__(self, engine: Engine, redis_client: redis.Redis | None) -> None:
        self._engine = engine
        self._redis = redis_client

    def check(self) -> Readiness:
        checks = {"database": OK, "migrations": OK, "redis": "not configured"}
        servers: dict[str, dict[str, Any]] = {}
        try:
            # Reads the schema's revision: a round trip (but a missing SQLite file is
            # reported, not created).
            problem = database.schema_problem(self._engine)
            if problem is not None:
                checks["migrations"] = problem.explained
            server = database.reached_server(self._engine)
            if server is not None:
                servers["database"] = {
                    "host": server.host,
                    "port": server.port,
                    "primary": server.primary,
                }
        except Exception as error:  # reported, not raised: this is the health answer
            checks["database"] = f"unreachable: {type(error).__name__}"
            checks["migrations"] = "unknown"
        if self._redis is not None:
            try:
                self._redis.ping()
                master = failover.redis_master(self._redis)
                checks["redis"] = OK
                if master is not None:
                    servers["redis"] = {"host": master[0], "port": master[1]}
            except redis.RedisError as error:
                checks["redis"] = f"unreachable: {type(error).__name__}"
        return Readiness(checks, servers)
