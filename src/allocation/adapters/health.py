"""Readiness: can this process reach what it needs right now?"""

from __future__ import annotations

import redis
from sqlalchemy import Engine

from allocation.adapters.sql import database

OK = "ok"


class ReadinessProbe:
    def __init__(self, engine: Engine, redis_client: redis.Redis | None) -> None:
        self._engine = engine
        self._redis = redis_client

    def check(self) -> dict[str, str]:
        """Each dependency's state: "ok", "not configured", or what is wrong."""
        checks = {"database": OK, "migrations": OK, "redis": "not configured"}
        try:
            # Reads the schema's revision: a round trip (but a missing SQLite file is
            # reported, not created).
            problem = database.schema_problem(self._engine)
            if problem is not None:
                checks["migrations"] = problem.explained
        except Exception as error:  # reported, not raised: this is the health answer
            checks["database"] = f"unreachable: {type(error).__name__}"
            checks["migrations"] = "unknown"
        if self._redis is not None:
            try:
                self._redis.ping()
                checks["redis"] = OK
            except redis.RedisError as error:
                checks["redis"] = f"unreachable: {type(error).__name__}"
        return checks
