"""Throwaway highly available servers for failover tests: a pg_auto_failover
formation (a monitor and two PostgreSQL nodes) and a Redis master with a replica
and three Sentinels, on loopback, with the faults to inject (a postmaster or a
whole node killed, a Redis master killed) and the waits that follow them.

    with PgAutoFailover() as postgres, RedisSentinel() as redis:
        old = postgres.primary()
        postgres.kill_node(old)
        new = postgres.wait_for_primary(exclude=old)
        postgres.restart_node(old)
        postgres.wait_for_secondary(old)

Only processes started here are ever signalled: the trees of the processes we
started, and whatever works in a topology's own temporary directory. Each server
gets a parent-death signal (it fires when the *thread* that started it ends:
start topologies from a long-lived thread, as pytest fixtures do), and ``stop()``
also runs at interpreter exit.
"""

from devtools.failover.postgres import PgAutoFailover
from devtools.failover.processes import processes_under
from devtools.failover.redis import RedisSentinel

__all__ = ["PgAutoFailover", "RedisSentinel", "processes_under"]
