"""psycopg2 helpers on the benchmark database: SQL, the outbox backlog, pg_stat_statements."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg2  # type: ignore[import-untyped]  # installed with the service

from bench.harness.config import DB_NAME


class Database:
    """One autocommit connection as the postgres superuser, opened on first use."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._conn: Any = None

    def connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(
                host="127.0.0.1",
                port=self.port,
                user="postgres",
                dbname=DB_NAME,
                connect_timeout=10,
            )
            self._conn.autocommit = True
        return self._conn

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connection().cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def has_batch_counter(self) -> bool:
        """Since migration 0003 batches keep their allocated quantity."""
        return bool(
            self.sql(
                "SELECT 1 FROM information_schema.columns "
                "WHERE table_name = 'batches' AND column_name = 'allocated_quantity'"
            )
        )

    def outbox_unsent(self) -> int:
        return int(self.sql("SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0][0])

    def wait_outbox_drained(self, timeout: float = 60) -> float | None:
        """Seconds until the relay has published everything; None on timeout."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.outbox_unsent() == 0:
                return time.monotonic() - started
            time.sleep(0.2)
        return None

    def pgss_reset(self) -> None:
        self.sql("SELECT pg_stat_statements_reset()")

    def pgss_top(self, limit: int = 10) -> dict[str, Any]:
        """The statements PostgreSQL spent most time on since the last reset."""
        rows = self.sql(
            """SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time, rows
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                WHERE d.datname = %s AND query NOT ILIKE '%%pg_stat_statements%%'
                ORDER BY total_exec_time DESC""",
            (DB_NAME,),
        )
        total = sum(float(r[2]) for r in rows)
        calls = sum(int(r[1]) for r in rows)
        return {
            "exec_ms_total": round(total, 1),
            "calls_total": calls,
            "top": [
                {
                    "query": r[0][:160],
                    "calls": int(r[1]),
                    "total_ms": round(float(r[2]), 1),
                    "mean_ms": round(float(r[2]) / max(1, int(r[1])), 3),
                    "rows": int(r[3]),
                }
                for r in rows[:limit]
            ],
        }
