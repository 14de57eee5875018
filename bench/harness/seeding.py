"""Seeding: batches and read orders through the HTTP API, growth allocations with direct SQL."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness.config import MAX_QTY, NEED_READ_ORDERS
from bench.harness.context import Run
from bench.harness.httpclient import Client
from bench.harness.loadgen import allocate_args


def add_batches(port: int, batches: list[dict[str, Any]]) -> None:
    """POST /add_batch for each batch, from 8 connections."""

    def worker(chunk: list[dict[str, Any]]) -> None:
        client = Client(port)
        try:
            for batch in chunk:
                status, body, _t = client.request("POST", "/add_batch", batch)
                if status != 201:
                    raise RuntimeError(f"add_batch {batch} -> {status} {body}")
        finally:
            client.close()

    chunks = [batches[i::8] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(worker, c) for c in chunks if c]:
            future.result()


def _batch(sku: str) -> dict[str, Any]:
    return {"ref": f"{sku}-b1", "sku": sku, "qty": MAX_QTY, "eta": None}


def _seed_batches(run: Run) -> None:
    c = run.config
    batches = [_batch(f"{p}-sku-{i:03d}") for p in ("alloc", "read", "long") for i in range(c.skus)]
    batches += [_batch(f"hold-sku-{i:03d}") for i in range(c.hold_skus)]
    batches.append(_batch("hotbase-sku-000"))
    batches += [_batch(f"growth-{level}-sku-000") for level in c.growth_levels]
    started = time.monotonic()
    add_batches(run.port, batches)
    run.log(
        f"seeded {len(batches)} batches through POST /add_batch "
        f"in {time.monotonic() - started:.1f}s"
    )


def _seed_read_orders(run: Run) -> None:
    c = run.config
    run.log(
        f"seeding {c.read_orders} orders for the read scenario through "
        "POST /allocate (wrk, doubles as warm-up)"
    )
    result = run.wrk().run(
        run.port,
        "allocate.lua",
        allocate_args(c.wrk_threads, "read-", "read-sku-", c.skus, c.read_orders),
        count=c.read_orders,
        label="seed-read",
    )
    found = run.sql(
        "SELECT count(DISTINCT orderid) FROM allocations_view WHERE orderid LIKE 'read-%%'"
    )[0][0]
    result["orders_in_view"] = int(found)
    run.results["seed_read"] = result
    run.log(
        f"seeded read orders: {result['rps']} req/s, {found} in the view, "
        f"statuses {result['statuses']}"
    )
    if found != c.read_orders:
        run.note(f"only {found} of {c.read_orders} read orders were allocated")


def seed(run: Run) -> None:
    """Batches for every scenario; the read orders (or a warm-up); ANALYZE."""
    c = run.config
    _seed_batches(run)
    if NEED_READ_ORDERS & set(c.scenarios):
        _seed_read_orders(run)
    else:
        run.log("warming up (3 s of allocations)")
        run.wrk().run(
            run.port,
            "allocate.lua",
            allocate_args(c.wrk_threads, "warm-", "long-sku-", c.skus, 0),
            duration=3,
            label="warmup",
        )
    run.sql("ANALYZE")


GROWTH_SQL = [
    """INSERT INTO allocations (batch_id, orderid, sku, qty)
       SELECT b.id, %(prefix)s || g, b.sku, 1
         FROM batches b, generate_series(1, %(n)s) g WHERE b.reference = %(ref)s""",
    """INSERT INTO allocations_view (orderid, sku, batchref)
       SELECT %(prefix)s || g, %(sku)s, %(ref)s FROM generate_series(1, %(n)s) g""",
    """INSERT INTO outbox (message_id, channel, sku, payload, occurred_at, sent_at)
       SELECT m.id, 'line_allocated', %(sku)s,
              json_build_object('orderid', %(prefix)s || m.g, 'sku', %(sku)s::text,
                                'qty', 1, 'batchref', %(ref)s::text,
                                'message_id', m.id, 'occurred_at', now())::text,
              now(), now()
         FROM (SELECT gen_random_uuid()::text AS id, g
                 FROM generate_series(1, %(n)s) g) m""",
    "UPDATE products SET version_number = version_number + %(n)s WHERE sku = %(sku)s",
]
GROWTH_COUNTER_SQL = (
    "UPDATE batches SET allocated_quantity = allocated_quantity + %(n)s WHERE reference = %(ref)s"
)


def seed_growth(run: Run, level: int) -> float:
    """Gives growth-<level>-sku-000 `level` allocations with direct SQL, as the
    service would have written them (allocation, view row, sent outbox message,
    product version and, since migration 0003, the batch's counter); returns seconds."""
    assert run.db is not None
    sku = f"growth-{level}-sku-000"
    params = {"prefix": f"gseed-{level}-", "n": level, "ref": f"{sku}-b1", "sku": sku}
    statements = GROWTH_SQL + ([GROWTH_COUNTER_SQL] if run.batch_counter else [])
    started = time.monotonic()
    conn = run.db.connection()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, params)
        conn.commit()
    finally:
        conn.autocommit = True
    return time.monotonic() - started
