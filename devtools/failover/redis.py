"""A throwaway Redis master, its replica(s) and three Sentinels, on 127.0.0.1.

What makes a failover quick and lossless here, and why:
- the Sentinels start after the replica's link is up, each told of the replica
  and of the other Sentinels (``known-replica``, ``known-sentinel``, as a
  Sentinel rewrites its own file): otherwise they find them only through the
  master's INFO (every 10 s) and each other's hellos;
- ``repl-diskless-sync no``: with diskless sync the master holds back the write
  stream for about a second after the replica reports its link up;
- a killed master is started again already a replica of the new one; Sentinel
  would convert it only seconds later, and meanwhile it is an empty master.

Speaks RESP itself (stdlib only), so that it needs nothing the tests do not.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from devtools.failover.processes import Topology, crash, terminate_all
from devtools.servers import STOP_TIMEOUT, ServerError, find_binary, free_port, start_process
from devtools.waiting import wait_until

LOOPBACK = "127.0.0.1"


class RedisSentinel(Topology):
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels watching it."""

    prefix = "allocation-sentinel-"

    def __init__(
        self,
        master_name: str = "mymaster",
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        base_dir: str | None = None,
    ) -> None:
        super().__init__(base_dir)
        self.master_name = master_name
        self.quorum = sentinels // 2 + 1
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self._replica_count = replicas
        self._sentinel_count = sentinels
        self._redis = find_binary("redis-server", ("/usr/bin", "/usr/local/bin"))
        self.servers: dict[int, subprocess.Popen[bytes] | None] = {}  # by port; None: killed
        self.sentinels: dict[int, subprocess.Popen[bytes]] = {}
        self.killed_master: int | None = None
        self._first_master: int | None = None

    @property
    def url(self) -> str:
        """REDIS_URL naming the Sentinels and the master."""
        hosts = ",".join(f"{LOOPBACK}:{port}" for port in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.master_name}/0"

    def master(self) -> tuple[str, int]:
        """The master a majority of the Sentinels name (without Sentinels, the one
        started as master)."""
        if not self.sentinels and self._first_master is not None:
            return LOOPBACK, self._first_master
        votes: dict[tuple[str, int], int] = {}
        for port in self.sentinels:
            named = self._named_master(port)
            if named is not None:
                votes[named] = votes.get(named, 0) + 1
        best = max(votes.items(), key=lambda vote: vote[1], default=None)
        if best is None or best[1] <= len(self.sentinels) // 2:
            raise ServerError(f"no majority of the Sentinels names a master: {votes}")
        return best[0]

    def master_port(self) -> int:
        return self.master()[1]

    def kill_master(self) -> int:
        """kill -9 the master (and any child it forked); its port."""
        port = self.master_port()
        process = self.servers.get(port)
        if process is None:
            raise ServerError(f"the master on {port} is not a running server of ours")
        crash([process.pid])
        process.wait(STOP_TIMEOUT)
        self.servers[port] = None
        self.killed_master = port
        return port

    def promoted_master(self) -> tuple[str, int] | None:
        """The new master, once every Sentinel names it and it says it is one."""
        named = {self._named_master(port) for port in self.sentinels}
        address = named.pop() if len(named) == 1 else None
        if address is None or address[1] == self.killed_master:
            return None
        return address if self._role(address[1]) == "master" else None

    def wait_for_new_master(self, timeout: float = 30.0) -> tuple[str, int]:
        what = "a new Redis master"
        return wait_until(
            what, self.promoted_master, timeout, detail=self.describe, error=ServerError
        )

    def restart_killed_master(self, timeout: float = 60.0) -> int:
        """Starts the killed master again as a replica of the current master, and
        waits until it replicates and every Sentinel lists it as a healthy replica.
        A Sentinel looks at replicas every 10 s, so on a loaded machine the last of
        them has been seen to take over 20 s."""
        port = self.killed_master
        if port is None or self.servers.get(port) is not None:
            raise ServerError("no killed master to restart")
        master = self.master_port()
        self._start_server(port, replica_of=master)
        self._check_replication(master, sum(p is not None for p in self.servers.values()) - 1)
        self._wait_for_sentinels({port}, timeout)
        self.killed_master = None
        return port

    def describe(self) -> str:
        """What each Sentinel says of the master and its replicas, for a failure."""
        name = self.master_name
        return "\n".join(
            f"sentinel {port}: {_quietly(port, 'SENTINEL', 'MASTER', name)}"
            f" replicas {_quietly(port, 'SENTINEL', 'REPLICAS', name)}"
            for port in self.sentinels
        )

    # -- start and stop -------------------------------------------------------

    def _start(self) -> None:
        master = self._first_master = free_port()
        self._start_server(master, replica_of=None)
        replicas = {free_port() for _ in range(self._replica_count)}
        for port in replicas:
            self._start_server(port, replica_of=master)
        self._check_replication(master, len(replicas))
        ids = {free_port(): os.urandom(20).hex() for _ in range(self._sentinel_count)}
        for port in ids:
            self._start_sentinel(port, master, replicas, ids)
        self._wait_for_sentinels(replicas, 30)

    def _stop(self) -> None:
        servers = [p for p in self.servers.values() if p is not None]
        terminate_all([*self.sentinels.values(), *servers], signal.SIGTERM, self.directory)
        self.sentinels.clear()
        self.servers.clear()

    def _start_server(self, port: int, replica_of: int | None) -> None:
        args = [
            self._redis, "--port", str(port), "--bind", LOOPBACK, "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(self.directory),
            "--logfile", "", "--repl-diskless-sync", "no",
        ]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", LOOPBACK, str(replica_of)]
        log = self.directory / f"redis-{port}.log"
        self.servers[port] = start_process(args, log, cwd=self.directory)

        if replica_of is None:
            ready = lambda: _quietly(port, "PING") == "PONG"  # noqa: E731
            wait_until(f"redis {port}", ready, 10, error=ServerError)
        else:
            self.wait_for_replica(port, replica_of)

    def wait_for_replica(self, replica: int, master: int, timeout: float = 10.0) -> None:
        """Waits until ``replica`` is linked to ``master`` and the master has it online:
        only then does the master stream its writes to it."""
        wait_until(
            f"replica {replica} of {master} online",
            lambda: self._linked(replica) and self._online(master, replica),
            timeout,
            error=ServerError,
        )

    @staticmethod
    def _check_replication(master: int, replicas: int) -> None:
        """A write on the master reaches ``replicas`` replicas (WAIT)."""
        command(master, "SET", "failover:canary", os.urandom(8).hex())
        acknowledged = command(master, "WAIT", replicas, 5000, timeout=6)
        if acknowledged < replicas:
            raise ServerError(f"only {acknowledged} of {replicas} replicas have a write")

    def _start_sentinel(
        self, port: int, master: int, replicas: set[int], ids: Mapping[int, str]
    ) -> None:
        name = self.master_name
        lines = [
            f"port {port}", f"bind {LOOPBACK}", "daemonize no", 'logfile ""',
            f"dir {self.directory}", f"sentinel myid {ids[port]}",
            f"sentinel monitor {name} {LOOPBACK} {master} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
            *(f"sentinel known-replica {name} {LOOPBACK} {r}" for r in sorted(replicas)),
            *(f"sentinel known-sentinel {name} {LOOPBACK} {other} {ids[other]}"
              for other in ids if other != port),
        ]  # fmt: skip
        conf = self.directory / f"sentinel-{port}.conf"
        conf.write_text("\n".join(lines) + "\n")
        log = self.directory / f"sentinel-{port}.log"
        args = [self._redis, str(conf), "--sentinel"]
        self.sentinels[port] = start_process(args, log, cwd=self.directory)

    def _wait_for_sentinels(self, replicas: set[int], timeout: float) -> None:
        """Every Sentinel knows every other one and sees ``replicas`` healthy."""
        wait_until(
            "the Sentinels to see the replicas and each other",
            lambda: all(self._sees(port, replicas) for port in self.sentinels),
            timeout,
            detail=self.describe,
            error=ServerError,
        )

    def _sees(self, port: int, replicas: set[int]) -> bool:
        master = _quietly(port, "SENTINEL", "MASTER", self.master_name)
        seen = _quietly(port, "SENTINEL", "REPLICAS", self.master_name)
        if not master or seen is None:
            return False
        healthy = {
            int(fields["port"])
            for fields in map(_pairs, seen)
            if fields["flags"] == "slave" and fields["master-link-status"] == "ok"
        }
        others = int(_pairs(master)["num-other-sentinels"])
        return others >= len(self.sentinels) - 1 and replicas <= healthy

    def _named_master(self, port: int) -> tuple[str, int] | None:
        reply = _quietly(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return (reply[0], int(reply[1])) if reply else None

    @staticmethod
    def _role(port: int) -> str | None:
        return info(port).get("role") if _quietly(port, "PING") == "PONG" else None

    @staticmethod
    def _online(master: int, replica: int) -> bool:
        replication = info(master) if _quietly(master, "PING") == "PONG" else {}
        listed = (v for k, v in replication.items() if k.startswith("slave"))
        return any(f"port={replica},state=online," in value for value in listed)

    @staticmethod
    def _linked(port: int) -> bool:
        return _quietly(port, "PING") == "PONG" and info(port).get("master_link_status") == "up"


def command(port: int, *args: str | int, timeout: float = 1.0) -> Any:
    """One command to the Redis or Sentinel on 127.0.0.1:``port``; its reply.
    OSError when it cannot be reached, ServerError for an error reply."""
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(_encoded(args))
        with sock.makefile("rb") as stream:
            return _reply(stream)


def info(port: int, section: str = "replication") -> dict[str, str]:
    text = command(port, "INFO", section)
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _quietly(port: int, *args: str | int) -> Any:
    """The reply, or None when the server cannot answer (down, or an error)."""
    try:
        return command(port, *args)
    except (OSError, ServerError):
        return None


def _encoded(args: Sequence[str | int]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _reply(stream: Any) -> Any:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise ServerError(rest.decode())
    if kind == b":":
        return int(rest)
    size = int(rest)
    if kind == b"$":
        return None if size < 0 else stream.read(size + 2)[:-2].decode()
    if kind == b"*":
        return None if size < 0 else [_reply(stream) for _ in range(size)]
    raise ServerError(f"unexpected reply {line!r}")


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
