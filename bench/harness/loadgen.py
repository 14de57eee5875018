"""The load generators, run as separate processes: wrk (Lua scripts in bench/wrk/) and pgbench."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness.config import DB_NAME, PGBENCH_DIR, WRK_DIR
from devtools.servers import PG_BIN_DIRS, pdeathsig_preexec


def find_wrk() -> str | None:
    return shutil.which("wrk")


def find_pgbench() -> str | None:
    return shutil.which("pgbench") or next(
        (str(Path(d) / "pgbench") for d in PG_BIN_DIRS if (Path(d) / "pgbench").exists()), None
    )


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def allocate_args(
    threads: int, order_prefix: str, sku_prefix: str, skus: int | str, count: int | str = 0
) -> list[str]:
    """allocate.lua's arguments (its header says what each means)."""
    return [str(threads), order_prefix, sku_prefix, str(skus), str(count)]


@dataclass
class Wrk:
    binary: str
    threads: int
    connections: int
    logs: Path

    def run(
        self,
        port: int,
        script: str,
        script_args: list[str],
        duration: int | None = None,
        count: int | None = None,
        label: str = "",
    ) -> dict[str, Any]:
        """Runs wrk for `duration` seconds, or until `count` requests were answered."""
        cmd = [
            self.binary,
            *("-t", str(self.threads), "-c", str(self.connections)),
            *("-d", f"{duration if duration else 3600}s", "--timeout", "30s"),
            *("-s", str(WRK_DIR / script), f"http://127.0.0.1:{port}", "--", *script_args),
        ]
        started = time.monotonic()
        limit = duration + 60 if duration else max(120, (count or 0) / 20)
        lines, finished_at, returncode = self._drive(cmd, limit)
        log_path = self.logs / f"wrk-{label or script}.txt"
        log_path.write_text("$ " + " ".join(cmd) + "\n" + "\n".join(lines) + "\n")
        result_line = next((x for x in lines if x.startswith("WRK_RESULT ")), None)
        if result_line is None:
            raise RuntimeError(
                f"wrk printed no result (exit {returncode}):\n" + "\n".join(lines[-30:])
            )
        raw = json.loads(result_line[len("WRK_RESULT ") :])
        if count:
            seconds = (finished_at if finished_at is not None else time.monotonic()) - started
        else:
            seconds = raw["duration_us"] / 1e6
        result = self._result(raw, seconds)
        result["wrk_exit"] = returncode
        return result

    def _drive(self, cmd: list[str], limit: float) -> tuple[list[str], float | None, int]:
        """Runs wrk, interrupting it once every thread reported its quota done (or at
        `limit` seconds); returns its output lines, when the quota was done, its exit."""
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=pdeathsig_preexec(signal.SIGTERM),
        )
        assert proc.stdout is not None
        lines: list[str] = []
        finished_threads: set[str] = set()
        finished_at: float | None = None

        def watchdog() -> None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

        timer = threading.Timer(limit, watchdog)
        timer.daemon = True
        timer.start()
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                lines.append(line)
                if line.startswith("WRK_THREAD_DONE"):
                    finished_threads.add(line.split()[1])
                    if len(finished_threads) >= self.threads and finished_at is None:
                        finished_at = time.monotonic()
                        proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return lines, finished_at, proc.returncode

    def _result(self, raw: dict[str, Any], seconds: float) -> dict[str, Any]:
        statuses = {int(k): v for k, v in raw["statuses"].items()}
        real = sum(statuses.values())
        lat = raw["latency_us"]
        non_2xx = sum(n for s, n in statuses.items() if not 200 <= s < 300)
        socket_errors = sum(raw["errors"][k] for k in ("connect", "read", "write", "timeout"))
        return {
            "tool": "wrk",
            "connections": self.connections,
            "seconds": round(seconds, 2),
            "requests": real,
            "rps": round(real / seconds, 1) if seconds > 0 else None,
            "latency_ms": {
                "p50": lat["percentiles"]["50"] / 1000,
                "p90": lat["percentiles"]["90"] / 1000,
                "p99": lat["percentiles"]["99"] / 1000,
                "p99.9": lat["percentiles"]["99.9"] / 1000,
                "mean": (lat["mean"] or 0) / 1000,
                "max": (lat["max"] or 0) / 1000,
            },
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "non_2xx": non_2xx,
            "out_of_stock": raw["out_of_stock"],
            "errors": non_2xx - raw["out_of_stock"] + socket_errors,
            "error_messages": dict(sorted(raw.get("messages", {}).items(), key=lambda kv: -kv[1])),
            "socket_errors": raw["errors"],
            "fillers": raw["fillers"],
        }


@dataclass
class Pgbench:
    binary: str
    pg_port: int
    clients: int
    threads: int
    logs: Path
    batch_counter: bool

    def run(
        self, script: str, defines: dict[str, str], duration: int, label: str
    ) -> tuple[dict[str, Any], str | None]:
        """The result, and a note when pgbench failed."""
        log_dir = self.logs / f"pgbench-{label}"
        log_dir.mkdir(exist_ok=True)
        cmd = [
            self.binary,
            *("-n", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres"),
            *("-c", str(self.clients), "-j", str(self.threads), "-T", str(duration)),
            *("-M", "prepared", "-f", str(PGBENCH_DIR / script)),
            *("-l", f"--log-prefix={log_dir / 'tx'}"),
        ]
        for key, value in {"counter": str(int(self.batch_counter)), **defines}.items():
            cmd += ["-D", f"{key}={value}"]
        cmd.append(DB_NAME)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            env=env,
            timeout=duration + 120,
            stdin=subprocess.DEVNULL,
        )
        (self.logs / f"pgbench-{label}.txt").write_text(
            "$ " + " ".join(cmd) + "\n" + out.stdout + "\n" + out.stderr
        )
        latencies = _transaction_latencies(log_dir)
        shutil.rmtree(log_dir, ignore_errors=True)
        tps_match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
        note = None
        if out.returncode != 0 or tps_match is None:
            note = f"pgbench {label} exited {out.returncode}: {out.stderr.strip()[-500:]}"
        failed_match = re.search(r"number of failed transactions: (\d+)", out.stdout)
        failed = int(failed_match.group(1)) if failed_match else 0
        tps = float(tps_match.group(1)) if tps_match else None
        return {
            "tool": "pgbench",
            "connections": self.clients,
            "seconds": duration,
            "requests": len(latencies),
            "rps": round(tps, 1) if tps is not None else None,
            "latency_ms": {
                "p50": pct(latencies, 50),
                "p90": pct(latencies, 90),
                "p99": pct(latencies, 99),
                "p99.9": pct(latencies, 99.9),
                "mean": statistics.fmean(latencies) if latencies else None,
                "max": max(latencies) if latencies else None,
            },
            "non_2xx": failed,
            "errors": failed + out.stderr.count("aborted"),
            "exit": out.returncode,
        }, note


def _transaction_latencies(log_dir: Path) -> list[float]:
    """Milliseconds per transaction from pgbench's per-transaction logs."""
    latencies: list[float] = []
    for path in log_dir.iterdir():
        with path.open() as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    latencies.append(int(parts[2]) / 1000)  # µs -> ms
    return latencies
