"""/proc readings: CPU ticks per process tree, worker memory, the machine and tool versions."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")

ProcessTable = dict[int, tuple[int, int]]


def _read_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 on), None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def process_table() -> ProcessTable:
    """pid -> (ppid, utime+stime+cutime+cstime in ticks) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            rest = _read_stat(int(entry))
            if rest is not None:
                # rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
                ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
                table[int(entry)] = (int(rest[1]), ticks)
    return table


def tree_ticks(root: int, table: ProcessTable) -> int:
    """CPU ticks of a process and all its live descendants, plus (through the
    children times of each) those of descendants that exited and were reaped."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _ticks) in table.items():
        children[ppid].append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1]
            stack.extend(children.get(pid, ()))
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def children_of(pid: int) -> list[int]:
    return sorted(p for p, (ppid, _t) in process_table().items() if ppid == pid)


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (zombies excluded)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            rest = _read_stat(int(entry))
            # rest[0] is the state, rest[2] the process group (field 5).
            if rest is not None and rest[0] != "Z" and int(rest[2]) == pgid:
                members.append(int(entry))
    return members


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def accept_queue(port: int) -> int:
    """Connections waiting to be accepted on the listening sockets of `port`
    (for a socket in LISTEN state, /proc/net/tcp's rx_queue is its accept queue)."""
    waiting = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                waiting += int(fields[4].split(":")[1], 16)
    return waiting


class AcceptQueueSampler:
    """Samples accept_queue(port) in a thread while a load runs (a `with` block)."""

    def __init__(self, port: int, interval: float = 0.25) -> None:
        self.port, self.interval = port, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(accept_queue(self.port))

    def __enter__(self) -> AcceptQueueSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        """Connections waiting to be accepted: the most and the mean over the samples."""
        if not self.samples:
            return {"max": 0, "mean": 0.0, "samples": 0}
        mean = sum(self.samples) / len(self.samples)
        return {"max": max(self.samples), "mean": round(mean, 2), "samples": len(self.samples)}


def cpu_snapshot(roots: dict[str, int | None]) -> dict[str, Any]:
    """CPU ticks of each named process tree, of the machine, of our load generators
    (children that exited: wrk, pgbench) and of this process."""
    table = process_table()
    snap: dict[str, Any] = {"wall": time.monotonic(), "machine": machine_ticks()}
    for name, pid in roots.items():
        snap[name] = tree_ticks(pid, table) if pid else 0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    snap["loadgen_s"] = children.ru_utime + children.ru_stime
    snap["harness_s"] = me.ru_utime + me.ru_stime
    return snap


def cpu_delta(before: dict[str, Any], after: dict[str, Any], names: list[str]) -> dict[str, float]:
    """CPU seconds of each named tree between two snapshots, plus the load generators,
    the harness, and `other`: what the rest of the machine used meanwhile."""
    wall = after["wall"] - before["wall"]
    delta = {name: (after[name] - before[name]) / CLK_TCK for name in names}
    # wrk / pgbench are our only children that exit during a measured window.
    delta["loadgen"] = after["loadgen_s"] - before["loadgen_s"]
    delta["harness"] = after["harness_s"] - before["harness_s"]
    busy = (after["machine"][0] - before["machine"][0]) / CLK_TCK
    total = (after["machine"][1] - before["machine"][1]) / CLK_TCK
    ours = sum(delta.values())
    delta["machine_busy"] = busy
    delta["other"] = max(0.0, busy - ours)
    delta["machine_capacity"] = total
    delta["wall"] = wall
    return {k: round(v, 2) for k, v in delta.items()}


def machine_info() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def git(where: str | Path, *args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""
