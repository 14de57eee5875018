"""py-spy over the API workers during an extra, unmeasured allocate run, and its summary."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness.config import ROOT
from bench.harness.context import Run
from bench.harness.loadgen import allocate_args
from devtools.servers import pdeathsig_preexec


def find_pyspy() -> str | None:
    beside_python = Path(sys.executable).with_name("py-spy")
    return (
        os.environ.get("PY_SPY")
        or shutil.which("py-spy")
        or (str(beside_python) if beside_python.exists() else None)
    )


def _record(run: Run, pyspy: str, mode: str, flags: list[str], raw: Path) -> None:
    """Samples the API's process tree while wrk sends allocations."""
    c = run.config
    assert run.db is not None
    run.db.wait_outbox_drained()
    run.log(
        f"profile ({mode}): py-spy on the API workers during {c.profile_seconds} s of allocations"
    )
    spy = subprocess.Popen(
        [
            *(pyspy, "record", "--pid", str(run.api.pid), "--subprocesses", "--nonblocking"),
            *("--format", "raw", "--rate", "100", "--duration", str(c.profile_seconds)),
            *flags,
            *("-o", str(raw)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=pdeathsig_preexec(signal.SIGTERM),
    )
    time.sleep(1)
    load = run.wrk().run(
        run.port,
        "allocate.lua",
        allocate_args(c.wrk_threads, f"prof-{mode}-", "long-sku-", c.skus, 0),
        duration=c.profile_seconds + 1,
        label=f"profile-{mode}",
    )
    out, _ = spy.communicate(timeout=60)
    (run.logs / f"py-spy-{mode}.txt").write_text(out.decode(errors="replace"))
    if not raw.exists():
        run.note(f"py-spy ({mode}) wrote no profile: " + out.decode(errors="replace")[-300:])
        return
    summary = summarise_profile(raw)
    summary["rps_while_profiling"] = load["rps"]
    summary["collapsed_stacks"] = str(raw.relative_to(ROOT))
    run.results["profile"][mode] = summary


def profile(run: Run) -> None:
    """Two profiles: "cpu" (only the thread holding the GIL is sampled, i.e. where
    the workers burn CPU) and "wall" (every thread that is not idle, i.e. where a
    request spends its time, waiting on PostgreSQL and for the GIL included)."""
    pyspy = find_pyspy()
    if pyspy is None:
        run.note("--profile: py-spy not found (pip install py-spy, or set PY_SPY=/path/to/py-spy)")
        run.log("py-spy not found; skipping the profile")
        return
    run.results["profile"] = {}
    for mode, flags in (("cpu", ["--gil"]), ("wall", [])):
        _record(run, pyspy, mode, flags, run.logs / f"profile-{mode}.txt")


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 1)[-1]


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    match = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not match:
        return frame
    func, path = match.groups()
    return f"{func} ({_short_path(path)})"


# Where a sample belongs, judged from the innermost matching frame first.
IDLE_LEAF = re.compile(
    r"^(_worker \(concurrent/futures/thread\.py|\w*Selector\.select |Arbiter\.sleep |"
    r"Condition\.wait |Event\.wait )"
)
PROFILE_BUCKETS = [
    ("pool pre-ping (a SELECT 1 round trip per connection checkout)", re.compile(r"do_ping")),
    (
        "PostgreSQL round trips (psycopg2 execute/commit/connect)",
        re.compile(r"\((psycopg2/|sqlalchemy/engine/default\.py)|do_execute|do_commit|do_rollback"),
    ),
    ("Redis client", re.compile(r"\(redis/")),
    ("logging (access log, INFO lines)", re.compile(r"\(logging/|glogging\.py")),
    ("JSON", re.compile(r"\(json/")),
    ("pydantic validation", re.compile(r"\(pydantic")),
    ("tenacity retry machinery", re.compile(r"\(tenacity/")),
    ("SQLAlchemy ORM (loading, flush, unit of work)", re.compile(r"\(sqlalchemy/orm/")),
    ("SQLAlchemy Core (compile, execute, pool, results)", re.compile(r"\(sqlalchemy/")),
    ("allocation service code", re.compile(r"\(allocation/")),
    ("Flask/Werkzeug", re.compile(r"\((flask|werkzeug)/")),
    ("granian (WSGI glue)", re.compile(r"\(granian/")),
    ("gunicorn (HTTP parsing, socket I/O)", re.compile(r"\(gunicorn/")),
]


def _bucket(frames: list[str]) -> str:
    if IDLE_LEAF.search(frames[-1]):
        return "idle threads (waiting for work)"
    for frame in reversed(frames):
        hit = next((label for label, pattern in PROFILE_BUCKETS if pattern.search(frame)), None)
        if hit:
            return hit
    return "other"


def summarise_profile(path: Path, top: int = 15) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        for name in {_frame_name(f) for f in frames}:
            inclusive[name] += count
        leaf[_frame_name(frames[-1])] += count
        buckets[_bucket(frames)] += count

    def share(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "buckets_pct": {k: share(v) for k, v in buckets.most_common()},
        "inclusive_pct": [{"frame": k, "pct": share(v)} for k, v in inclusive.most_common(top * 2)],
        "self_pct": [{"frame": k, "pct": share(v)} for k, v in leaf.most_common(top)],
    }
