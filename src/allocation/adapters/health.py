"""Readiness: can this process reach what it needs right now?"""

from __future__ import annotations

import redis
from sqlalchemy import Engine, text

from allocation.adapters import database

OK = "ok"


class ReadinessProbe:
    def __init__(self, engine: Engine, redis_client: redis.Redis | None) -> None:
        self._engine = engine
        self._redis = redis_client

    def check(self) -> dict[str, str]:
        """Each dependency's state: "ok", "not configured", or what is wrong."""
        checks = {"database": OK, "migrations": OK, "redis": "not configured"}
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            current, head = database.current_revision(self._engine), database.head_revision()
            if current != head:
                checks["migrations"] = f"at {current}, head is {head}: run allocation migrate"
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
