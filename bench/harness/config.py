"""The run's configuration: paths, constants, Config and the command-line options."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from allocation.entrypoints.cli import server

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
WRK_DIR = BENCH / "wrk"
PGBENCH_DIR = BENCH / "pgbench"
DB_NAME = "allocation_bench"
MAX_QTY = 1_000_000_000

DESCRIPTION = "Benchmark of the allocation service as it ships, in one command."
ALL_SCENARIOS = (
    "allocate",
    "hold",
    "hot",
    "read",
    "availability",
    "ceiling",
    "growth",
    "long",
    "servers",
)
# Scenarios that GET the seeded read orders (`read-1` …).
NEED_READ_ORDERS = frozenset({"read", "ceiling", "servers"})


def service_default_workers() -> int:
    """`allocation api`'s default."""
    return server.default_workers()


SERVICE_DEFAULT_THREADS = server.DEFAULT_THREADS  # `allocation api`'s default


@dataclass
class Config:
    duration: int = 20
    connections: int = 8
    wrk_threads: int = 2
    workers: int = field(default_factory=service_default_workers)
    threads: int = SERVICE_DEFAULT_THREADS
    skus: int = 100
    hold_skus: int = 200  # the hold row places and confirms holds over this many SKUs
    read_orders: int = 10_000
    growth_levels: tuple[int, ...] = (0, 1_000, 10_000, 50_000)
    growth_samples: int = 200
    growth_seconds: float = 12.0  # per level, at most (but at least growth_min_samples)
    growth_min_samples: int = 10
    long_run: int = 10_000
    hot_batches: int = 4
    paired_slices: int = 4  # read and availability alternate in this many slices each
    ceiling_seconds: int = 12  # per ceiling row, in paired_slices alternating slices
    servers_seconds: int = 8  # per server and path in the servers comparison
    profile: bool = False
    profile_seconds: int = 10
    scenarios: tuple[str, ...] = ALL_SCENARIOS
    quick: bool = False
    src: str | None = None
    allocation_bin: str = str(Path(sys.executable).with_name("allocation"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    add = parser.add_argument
    add("--duration", type=int, help="seconds per load scenario (default 20; 5 with --quick)")
    add(
        "--quick",
        action="store_true",
        help="a smoke run: 5 s scenarios (3 s ceiling and servers rows), 2,000 read orders, "
        "growth up to 10,000, long run of 2,000",
    )
    add(
        "--long-run",
        type=int,
        metavar="N",
        help="allocations sent between the two worker-memory readings "
        "(default 10,000; e.g. 100000 for the long run; 0 skips it)",
    )
    add("--connections", type=int, default=8, help="HTTP connections / pgbench clients")
    add(
        "--workers",
        type=int,
        default=service_default_workers(),
        help="API worker processes (default: the service's, 2 per CPU, here %(default)s)",
    )
    add(
        "--threads",
        type=int,
        default=SERVICE_DEFAULT_THREADS,
        help="threads per worker (default: the service's, %(default)s)",
    )
    add(
        "--profile",
        action="store_true",
        help="after the scenarios, sample the API workers with py-spy during an "
        "extra (unmeasured) allocate run and summarise where time goes",
    )
    add(
        "--src",
        metavar="DIR",
        help="serve the service from another source tree (its src/ directory, e.g. "
        "a `git worktree` of an older commit) to compare versions; default: "
        "the installed package",
    )
    add(
        "--scenarios",
        default=",".join(ALL_SCENARIOS),
        help=f"comma-separated subset of {','.join(ALL_SCENARIOS)} (for development)",
    )
    return parser


def _make_quick(config: Config) -> None:
    config.duration = 5
    config.read_orders = 2_000
    config.growth_levels = (0, 1_000, 10_000)
    config.growth_samples = 30
    config.growth_seconds = 4.0
    config.growth_min_samples = 5
    config.long_run = 2_000
    config.profile_seconds = 5
    config.ceiling_seconds = 3
    config.servers_seconds = 3
    config.paired_slices = 1


def parse_args(argv: list[str] | None = None) -> Config:
    parser = _parser()
    args = parser.parse_args(argv)
    config = Config(
        connections=args.connections,
        workers=args.workers,
        threads=args.threads,
        profile=args.profile,
        quick=args.quick,
    )
    if args.quick:
        _make_quick(config)
    if args.duration is not None:
        config.duration = args.duration
    if args.long_run is not None:
        config.long_run = args.long_run
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = set(scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    config.scenarios = scenarios
    if args.src:
        src = Path(args.src).resolve()
        if not (src / "allocation" / "__init__.py").exists():
            parser.error(f"--src {src}: no allocation package there (pass the src/ directory)")
        config.src = str(src)
    if config.connections < config.wrk_threads:
        config.wrk_threads = config.connections
    return config
