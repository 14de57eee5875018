"""The service's scenarios: allocate, hot, read, availability, growth and long (each with
its SQL baseline)."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from functools import partial
from typing import Any

from bench.harness.context import Run
from bench.harness.httpclient import Client
from bench.harness.loadgen import allocate_args, pct
from bench.harness.measure import Row, interleaved, measured
from bench.harness.seeding import add_batches, seed_growth


def _pgbench(run: Run, script: str, defines: dict[str, str], label: str) -> dict[str, Any]:
    result, note = run.pgbench().run(script, defines, run.config.duration, label)
    if note:
        run.note(note)
    return result


def allocate(run: Run) -> None:
    """The allocate row; with the hold row when this run has it, measured in
    alternating slices, as the one is judged against the other."""
    c = run.config
    rows = [
        Row(
            "allocate",
            f"POST /allocate, unique orders over {c.skus} SKUs, {c.connections} connections",
            lambda seconds, label: run.wrk().run(
                run.port,
                "allocate.lua",
                allocate_args(c.wrk_threads, f"{label}-", "alloc-sku-", c.skus, 0),
                duration=seconds,
                label=label,
            ),
        )
    ]
    if "hold" in c.scenarios:
        rows.append(_hold_row(run))
    interleaved(run, rows, c.duration, c.paired_slices)
    if "hold" in c.scenarios:
        _count_pairs(run.results["scenarios"]["hold"])
    measured(
        run,
        "baseline-allocate",
        f"pgbench: the minimal SQL of one allocation, same {c.skus} SKUs, {c.connections} clients",
        lambda: _pgbench(
            run,
            "allocate.sql",
            {"prefix": "alloc-sku-", "lo": "0", "hi": str(c.skus - 1)},
            "allocate",
        ),
    )


def _hold_row(run: Run) -> Row:
    """Checkouts: each hold placed, then confirmed once its 201 is back."""
    c = run.config
    return Row(
        "hold",
        f"POST /holds then POST /holds/<holdid>/confirm, unique holds over {c.hold_skus} SKUs, "
        f"{c.connections} connections",
        lambda seconds, label: run.wrk().run(
            run.port,
            "hold.lua",
            [str(c.wrk_threads), f"{label}-", "hold-sku-", str(c.hold_skus)],
            duration=seconds,
            label=label,
        ),
    )


def _count_pairs(result: dict[str, Any]) -> None:
    """req/s counts both requests of a checkout: pairs per second are half of it."""
    statuses = result.get("statuses", {})
    result["pairs_per_second"] = (result.get("rps") or 0) / 2
    result["placed"], result["confirmed"] = int(statuses.get("201", 0)), int(statuses.get("202", 0))


def hold(run: Run) -> None:
    """Measured with allocate, in alternating slices (see `allocate`)."""
    if "allocate" not in run.config.scenarios:
        _run_hold_alone(run)


def _run_hold_alone(run: Run) -> None:
    interleaved(run, [_hold_row(run)], run.config.duration, run.config.paired_slices)
    _count_pairs(run.results["scenarios"]["hold"])


def _add_hot_batches(run: Run) -> int:
    """One SKU, four batches (one in the warehouse, three with ETAs) holding about 20%
    of what `allocate` sold in as much time; returns the stock."""
    c = run.config
    # Contention makes `hot` 2-3x slower than `allocate`, so it sells out and later orders get 409.
    allocate_rps = (run.results["scenarios"].get("allocate") or {}).get("rps") or 200
    per_batch = max(1, max(300, int(allocate_rps * c.duration * 0.2)) // c.hot_batches)
    batches = [
        {
            "ref": f"hot-sku-000-b{i + 1}",
            "sku": "hot-sku-000",
            "qty": per_batch,
            "eta": None if i == 0 else f"2031-0{i}-01",
        }
        for i in range(c.hot_batches)
    ]
    add_batches(run.port, batches[:1])
    add_batches(run.port, batches[1:])
    return per_batch * c.hot_batches


def _check_hot(run: Run, result: dict[str, Any], stock: int) -> None:
    """No batch oversold, every 202 one unit in a batch, sold out exactly once refused."""
    counter = "b.allocated_quantity" if run.batch_counter else "NULL"
    rows = run.sql(
        f"""SELECT b.reference, b.purchased_quantity, coalesce(sum(a.qty), 0), count(a.id),
                   {counter}
             FROM batches b LEFT JOIN allocations a ON a.batch_id = b.id
            WHERE b.sku = 'hot-sku-000' GROUP BY b.id ORDER BY b.id"""
    )
    allocated = sum(int(r[2]) for r in rows)
    oversold = [r[0] for r in rows if int(r[2]) > int(r[1])]
    result["stock"] = stock
    result["allocated_units"] = allocated
    result["accepted"] = int(result["statuses"].get("202", 0))
    result["oversold_batches"] = oversold
    result["batches"] = [
        {
            "ref": r[0],
            "purchased": int(r[1]),
            "allocated": int(r[2]),
            "allocated_quantity_column": r[4],
        }
        for r in rows
    ]
    # Once an order got "Out of stock" the SKU should be exactly sold out (qty 1 per order).
    result["sold_out_exactly"] = (allocated == stock) if result["out_of_stock"] else None
    result["accepted_matches_allocations"] = result["accepted"] == allocated
    run.log(
        f"hot: {allocated}/{stock} units allocated, {result['accepted']} accepted, "
        f"{result['out_of_stock']} out of stock, oversold batches: {oversold or 'none'}"
    )


def hot(run: Run) -> None:
    c = run.config
    stock = _add_hot_batches(run)
    result = measured(
        run,
        "hot",
        f"POST /allocate, every order on one SKU ({stock} units in {c.hot_batches} "
        f"batches), {c.connections} connections",
        lambda: run.wrk().run(
            run.port,
            "allocate.lua",
            allocate_args(c.wrk_threads, "hot-", "hot-sku-", 1, 0),
            duration=c.duration,
            label="hot",
        ),
    )
    _check_hot(run, result, stock)
    measured(
        run,
        "baseline-hot",
        f"pgbench: the minimal SQL of one allocation, one SKU, {c.connections} clients",
        lambda: _pgbench(
            run, "allocate.sql", {"prefix": "hotbase-sku-", "lo": "0", "hi": "0"}, "hot"
        ),
    )


def read(run: Run) -> None:
    """The read row; with the availability row when this run has it, measured in
    alternating slices, as the one is judged against the other."""
    c = run.config
    n = c.read_orders
    rows = [
        Row(
            "read",
            f"GET /allocations/<orderid> over {n} allocated orders, {c.connections} connections",
            lambda seconds, label: run.wrk().run(
                run.port, "read.lua", ["read-", str(n)], duration=seconds, label=label
            ),
        )
    ]
    if (
        "availability" in c.scenarios
        and "availability" not in run.results["scenarios"]
        and _serves_availability(run)
    ):
        rows.append(_availability_row(run))
    interleaved(run, rows, c.duration, c.paired_slices)
    measured(
        run,
        "baseline-read",
        f"pgbench: the view's SELECT by orderid, {c.connections} clients",
        lambda: _pgbench(run, "read.sql", {"prefix": "read-", "n": str(n)}, "read"),
    )


def _serves_availability(run: Run) -> bool:
    probe = Client(run.port)
    try:
        return probe.request("GET", "/availability/read-sku-000")[0] != 404
    finally:
        probe.close()


def _availability_row(run: Run) -> Row:
    """The availability row, its SKUs first given two shipments each, so that every
    answer has dates to tell."""
    c = run.config
    batches = [
        {"ref": f"read-sku-{i:03d}-ship{n}", "sku": f"read-sku-{i:03d}", "qty": 50, "eta": eta}
        for i in range(c.skus)
        for n, eta in ((1, "2031-01-01"), (2, "2031-02-01"))
    ]
    add_batches(run.port, batches)
    return Row(
        "availability",
        f"GET /availability/<sku>?qty=N over {c.skus} SKUs (3 batches each), "
        f"{c.connections} connections",
        lambda seconds, label: run.wrk().run(
            run.port, "availability.lua", ["read-sku-", str(c.skus)], duration=seconds, label=label
        ),
    )


def availability(run: Run) -> None:
    """The availability row (measured with the read row when the run has both) and
    its SQL baseline."""
    c = run.config
    if "availability" not in run.results["scenarios"]:
        if not _serves_availability(run):
            run.note("availability: this commit does not serve GET /availability; row skipped")
            return
        interleaved(run, [_availability_row(run)], c.duration, 1)
    measured(
        run,
        "baseline-availability",
        f"pgbench: the availability view's SELECT by SKU, {c.connections} clients",
        lambda: _pgbench(
            run, "availability.sql", {"prefix": "read-sku-", "n": str(c.skus)}, "availability"
        ),
    )


def _sequential_allocations(run: Run, level: int, sku: str) -> dict[str, Any]:
    """One allocation at a time on `sku`: up to growth_samples, or growth_seconds."""
    c = run.config
    client = Client(run.port)
    samples: list[float] = []
    statuses: Counter[int] = Counter()
    try:
        for i in range(2):  # warm the connection and this worker's caches
            body = {"orderid": f"gwarm-{level}-{i}", "sku": sku, "qty": 1}
            client.request("POST", "/allocate", body)
        started = time.monotonic()
        i = 0
        while i < c.growth_samples and (
            i < c.growth_min_samples or time.monotonic() - started < c.growth_seconds
        ):
            body = {"orderid": f"g-{level}-{i}", "sku": sku, "qty": 1}
            status, _body, elapsed = client.request("POST", "/allocate", body)
            statuses[status] += 1
            samples.append(elapsed * 1000)
            i += 1
        seconds = time.monotonic() - started
    finally:
        client.close()
    non_2xx = sum(n for s, n in statuses.items() if not 200 <= s < 300)
    return {
        "tool": "http.client (sequential)",
        "connections": 1,
        "seconds": round(seconds, 2),
        "requests": len(samples),
        "rps": round(len(samples) / seconds, 1) if seconds else None,
        "latency_ms": {
            "p50": statistics.median(samples),
            "p90": pct(samples, 90),
            "p99": pct(samples, 99),
            "p99.9": None,
            "mean": statistics.fmean(samples),
            "max": max(samples),
            "min": min(samples),
        },
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "non_2xx": non_2xx,
        "out_of_stock": 0,
        "errors": non_2xx,
    }


def growth(run: Run) -> None:
    assert run.db is not None
    levels = run.config.growth_levels
    run.log("growth: seeding allocations with SQL")
    seed_seconds = {level: round(seed_growth(run, level), 2) for level in levels if level}
    run.sql("ANALYZE")
    run.db.wait_outbox_drained()
    for level in levels:
        sku = f"growth-{level}-sku-000"
        existing = int(run.sql("SELECT count(*) FROM allocations WHERE sku = %s", (sku,))[0][0])
        measured(
            run,
            f"growth-{level}",
            f"one allocation at a time on a SKU with {existing} allocations",
            partial(_sequential_allocations, run, level, sku),
            extra={"existing_allocations": existing, "seed_seconds": seed_seconds.get(level, 0.0)},
        )


def long(run: Run) -> None:
    c = run.config
    n = c.long_run
    if n <= 0:
        return
    assert run.db is not None
    run.db.wait_outbox_drained()
    run.results["memory"]["before_long_run_kib"] = run.worker_rss()
    measured(
        run,
        "long",
        f"{n} POST /allocate over {c.skus} SKUs, {c.connections} connections "
        "(worker memory before/after)",
        lambda: run.wrk().run(
            run.port,
            "allocate.lua",
            allocate_args(c.wrk_threads, "long-", "long-sku-", c.skus, n),
            count=n,
            label="long",
        ),
    )
    time.sleep(1)
    run.results["memory"]["after_long_run_kib"] = run.worker_rss()
    run.results["memory"]["long_run_requests"] = n
