"""The end-of-run checks: no batch oversold, every allocation complete, outbox drained."""

from __future__ import annotations

from typing import Any

from bench.harness.context import Run


def _stream_length(run: Run) -> int | None:
    try:
        import redis

        assert run.redis is not None
        length: Any = redis.Redis.from_url(run.redis.url).xlen("line_allocated")
        return int(length)
    except Exception as error:  # informative only
        run.note(f"could not read the Redis stream length: {error}")
        return None


def _count(run: Run, query: str) -> int:
    return int(run.sql(query)[0][0])


def final_checks(run: Run) -> None:
    assert run.db is not None
    drained = run.db.wait_outbox_drained(120)
    oversold = run.sql(
        """SELECT b.reference, b.purchased_quantity, sum(a.qty)
             FROM batches b JOIN allocations a ON a.batch_id = b.id
            GROUP BY b.id HAVING sum(a.qty) > b.purchased_quantity"""
    )
    drift: list[Any] = []
    if run.batch_counter:
        drift = run.sql(
            """SELECT b.reference, b.allocated_quantity, coalesce(sum(a.qty), 0)
                 FROM batches b LEFT JOIN allocations a ON a.batch_id = b.id
                GROUP BY b.id HAVING b.allocated_quantity <> coalesce(sum(a.qty), 0)"""
        )
    allocations = _count(run, "SELECT count(*) FROM allocations")
    view = _count(run, "SELECT count(*) FROM allocations_view")
    messages = _count(run, "SELECT count(*) FROM outbox WHERE channel = 'line_allocated'")
    stream_len = _stream_length(run)
    restarted = sorted(run.worker_pids_seen - set(run.worker_pids()))
    run.results["checks"] = {
        "oversold_batches": [r[0] for r in oversold],
        # pgbench's baseline keeps the counter too, so any drift is the service's.
        "batches_whose_allocated_quantity_disagrees": (
            [{"ref": r[0], "counter": int(r[1]), "sum": int(r[2])} for r in drift]
            if run.batch_counter
            else None
        ),
        "allocations": allocations,
        "allocations_view_rows": view,
        "line_allocated_outbox_rows": messages,
        "every_allocation_has_view_row_and_message": allocations == view == messages,
        "outbox_drained_after_s": None if drained is None else round(drained, 1),
        "line_allocated_stream_length": stream_len,
        "workers_replaced_during_run": restarted,
        "services_alive_at_end": {n: s.alive() for n, s in run.services.items()},
    }


def failed_checks(checks: dict[str, Any]) -> list[str]:
    """What is not green in the end-of-run checks ([] when all are)."""
    failed = []
    if checks.get("oversold_batches"):
        failed.append(f"{len(checks['oversold_batches'])} batches oversold")
    if checks.get("batches_whose_allocated_quantity_disagrees"):
        failed.append("allocated_quantity disagrees with the lines")
    if not checks.get("every_allocation_has_view_row_and_message"):
        failed.append("allocations, view rows and line_allocated messages differ")
    if checks.get("outbox_drained_after_s") is None:
        failed.append("the outbox did not drain")
    if checks.get("workers_replaced_during_run"):
        failed.append(f"{len(checks['workers_replaced_during_run'])} workers replaced")
    dead = [n for n, alive in (checks.get("services_alive_at_end") or {}).items() if not alive]
    if dead:
        failed.append(f"not alive at the end: {', '.join(dead)}")
    return failed
