"""Failover: PostgreSQL's primary and Redis's master die under load, and nothing
acknowledged is lost.

A pg_auto_failover formation (a monitor, two nodes) and Redis (a master, a replica,
three Sentinels); two APIs, two relays and two consumers, half of them given the
database as `pg_autoctl show uri` prints it (libpq's form), half in SQLAlchemy's
multi-host form, all given the Sentinels; a bounded load of allocations. Then
kill -9 of the primary's postmaster, of the Redis master, and of the new primary's
whole node, each followed by its recovery, the load running throughout.
"""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from allocation import bootstrap
from devtools.failover import PgAutoFailover, RedisSentinel, processes_under
from devtools.servers import free_port
from tests.e2e.conftest import Service, metric_total, migrate, service_environment
from tests.e2e.failover_load import Load, Moment, WritableWatch, first_after
from tests.e2e.test_api import add_batch
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

STATEMENT_TIMEOUT_MS = 5000
GAP_LIMIT = 2.0  # seconds from a promotion to the first write through it
STEADY = [f"steady-{n}" for n in range(4)]  # never runs out: the load's writes go on
SCARCE = ["scarce-0", "scarce-1"]  # runs out: nothing may be oversold
SCARCE_UNITS = 30
# What each process logs once it works: the APIs answer /health instead.
READY = [None, None, "relaying the outbox", "relaying the outbox"] + 2 * ["reading stream"]


@dataclass
class Stack:
    formation: PgAutoFailover
    sentinels: RedisSentinel
    apis: list[Service]
    workers: list[Service]  # relays, then consumers
    database: Engine

    @property
    def relays(self) -> list[Service]:
        return self.workers[:2]

    @property
    def consumers(self) -> list[Service]:
        return self.workers[2:]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with PgAutoFailover() as formation, RedisSentinel() as sentinels:
        directories = [formation.directory, sentinels.directory]
        libpq_form = formation.libpq_uri().replace("://", "://postgres@", 1)
        environments = [
            service_environment(libpq_form, sentinels.url, DATABASE_PASSWORD="never-logged"),
            service_environment(formation.url, sentinels.url),
        ]
        for env in environments:
            env["STATEMENT_TIMEOUT_MS"] = str(STATEMENT_TIMEOUT_MS)
        migrate(environments[0])
        apis, workers = _services(environments, tmp_path)
        database = create_engine(formation.url, poolclass=NullPool)
        try:
            # From this thread: a child is signalled when the thread that started it ends.
            for service, ready in zip([*apis, *workers], READY, strict=True):
                service.start(ready, timeout=60)
            yield Stack(formation, sentinels, apis, workers, database)
        finally:
            for service in [*apis, *workers]:
                service.stop()
            database.dispose()
    assert [processes_under(d) for d in directories] == [[], []]


def _services(envs: list[dict[str, str]], logs: Path) -> tuple[list[Service], list[Service]]:
    """An API, a relay and a consumer on each environment (one worker per API: two
    cores run all of this)."""
    apis, workers = [], []
    for n, env in enumerate(envs):
        port = free_port()
        args = ["api", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        url = f"http://127.0.0.1:{port}"
        apis.append(Service([*args, "--threads", "4"], env, logs / f"api{n}.log", url))
    for kind in ("relay", "consumer"):
        for n, env in enumerate(envs):
            port = free_port()
            worker = Service([kind, "--metrics-port", str(port)], env, logs / f"{kind}{n}.log")
            worker.metrics_url = f"http://127.0.0.1:{port}"
            workers.append(worker)
    return apis, workers


@dataclass(frozen=True)
class Fault:
    what: str
    kill: Moment
    promoted: Moment  # as the test saw it: a node took writes, or the Sentinels agreed
    settled: Moment


class Inbound:
    """change_batch_quantity messages to the stream, through the Sentinels, each
    naming a new quantity of a batch of its own: applied means the consumers work."""

    def __init__(self, stack: Stack, api: Service) -> None:
        self.client = bootstrap.make_redis(stack.sentinels.url)
        self.database = stack.database
        self.sent = 0
        add_batch(api, "inbound-probe", "inbound-sku", 1000)

    def send(self) -> str:
        """Sends the next change (again while Redis has no master); its entry id."""
        self.sent += 1
        data = {"batchref": "inbound-probe", "qty": 1000 + self.sent, "sequence": self.sent}
        data["message_id"] = f"inbound-{self.sent}"
        return str(wait_until(f"Redis to take change {self.sent}", lambda: self._xadd(data), 30))

    def applied(self, timeout: float = 15) -> Moment:
        """Waits until the last change sent is applied; when it was seen applied."""
        expected = 1000 + self.sent
        what = f"change {self.sent} applied"
        wait_until(what, lambda: self._quantity() == expected, timeout, interval=0.02)
        return Moment.now()

    def _xadd(self, data: dict[str, object]) -> str | None:
        try:
            entry = self.client.xadd("change_batch_quantity", {"data": json.dumps(data)})
            return entry.decode() if isinstance(entry, bytes) else str(entry)
        except redis.ConnectionError:  # no master now
            return None

    def _quantity(self) -> int:
        with self.database.connect() as connection:
            qty = connection.execute(
                text("SELECT purchased_quantity FROM batches WHERE reference = 'inbound-probe'")
            ).scalar_one()
        return int(qty)


def test_the_service_survives_the_loss_of_the_primary_and_of_the_redis_master(
    stack: Stack,
) -> None:
    api = stack.apis[0]
    for sku in STEADY:
        add_batch(api, f"{sku}-batch", sku, 1_000_000)
    for sku in SCARCE:
        for half in ("a", "b"):
            add_batch(api, f"{sku}-{half}", sku, SCARCE_UNITS // 2)
    inbound = Inbound(stack, api)
    skus = [*STEADY, SCARCE[0], *STEADY, SCARCE[1]]
    apis = [a.url for a in stack.apis]
    with WritableWatch(stack.formation) as watch, Load(apis, skus, threads=4, pause=0.02) as load:
        wait_until("the load under way", lambda: len(load.ledger.acknowledged()) >= 50, 30)
        faults = [
            kill_the_primarys_postmaster(stack, watch, inbound),
            kill_the_redis_master(stack, inbound),
            kill_the_primarys_node(stack, watch, inbound),
        ]
        acknowledged = len(load.ledger.acknowledged())
        wait_until(
            "writes after the last fault",
            lambda: len(load.ledger.acknowledged()) > acknowledged + 50,
            30,
        )
    report(stack, faults, load, inbound)
    check_the_answers(load)
    check_the_gaps(stack, faults, load)
    check_every_acknowledged_allocation_is_there_and_nothing_oversold(stack, load)
    check_every_event_is_on_the_promoted_master(stack)
    check_the_servers_each_process_follows(stack)


def kill_the_primarys_postmaster(stack: Stack, watch: WritableWatch, inbound: Inbound) -> Fault:
    """Its keeper restarts PostgreSQL at once, and the monitor may fail over anyway:
    whichever node ends primary, the other must be its secondary."""
    formation = stack.formation
    old = formation.primary()
    assert old is not None
    kill = Moment.now()
    formation.kill_postmaster(old)
    formation.wait_settled(timeout=60)
    settled = Moment.now()
    inbound.send()
    inbound.applied()
    return Fault(f"postmaster of {old}", kill, watch.promotion_after(kill, settled), settled)


def kill_the_redis_master(stack: Stack, inbound: Inbound) -> Fault:
    """The consumer group, with its position, goes on on the promoted replica; a
    change sent as soon as the Sentinels agree is applied within the gap's limit."""
    sentinels = stack.sentinels
    inbound.send()
    inbound.applied()
    kill = Moment.now()
    old = sentinels.kill_master()
    sentinels.wait_for_new_master()
    promoted = Moment.now()
    inbound.send()
    applied = inbound.applied()
    assert applied.monotonic - promoted.monotonic < GAP_LIMIT, "the consumers were late"
    wait_until("the change acknowledged", lambda: pending_changes(sentinels) == 0, 10)
    assert sentinels.restart_killed_master() == old
    return Fault("Redis master", kill, promoted, Moment.now())


def kill_the_primarys_node(stack: Stack, watch: WritableWatch, inbound: Inbound) -> Fault:
    """A machine dies: its pg_autoctl and PostgreSQL at once; the other node is
    promoted, and the dead one, started again, rejoins as a secondary."""
    formation = stack.formation
    old = formation.primary()
    assert old is not None
    kill = Moment.now()
    formation.kill_node(old)
    formation.wait_for_primary(exclude=old, timeout=60)
    seen = Moment.now()
    inbound.send()
    assert inbound.applied().monotonic - seen.monotonic < GAP_LIMIT, "the consumers were late"
    formation.restart_node(old)
    formation.wait_for_secondary(old, timeout=60)
    settled = Moment.now()
    inbound.send()
    inbound.applied()
    return Fault(f"node {old}", kill, watch.promotion_after(kill, settled), settled)


def pending_changes(sentinels: RedisSentinel) -> int:
    """Entries the consumer group read and did not acknowledge, on the master now."""
    host, port = sentinels.master()
    client = redis.Redis(host, port)
    try:
        return int(client.xpending("change_batch_quantity", "allocation")["pending"])
    finally:
        client.close()


def report(stack: Stack, faults: list[Fault], load: Load, inbound: Inbound) -> None:
    """The figures, for the README and for whoever reads a failure: per fault, when
    the test saw the promotion, the longest pause in acknowledged writes and in
    publishing around it, the first of each past the promotion, and the 503s."""
    ledger = load.ledger
    print(
        f"\n{len(ledger.acknowledged())} allocations acknowledged, {len(ledger.with_status(409))}"
        f" refused, {len(ledger.with_status(503))} answered 503, {inbound.sent} changes applied"
    )
    writes = [a.ended.monotonic for a in ledger.acknowledged()]
    published, marked = publish_moments(stack), sent_moments(stack)
    for fault in faults:
        kill, promoted = fault.kill, fault.promoted
        sent = published if fault.what.startswith("Redis") else marked
        print(
            f"{fault.what}: promoted {promoted.monotonic - kill.monotonic:.2f}s after the kill,"
            f" settled after {fault.settled.monotonic - kill.monotonic:.2f}s;"
            f" writes paused {longest_pause(writes, kill.monotonic, fault.settled.monotonic):.2f}s,"
            f" first {gap(writes, promoted.monotonic):+.2f}s past the promotion;"
            f" publishing paused {longest_pause(published, kill.wall, fault.settled.wall):.2f}s,"
            f" first {gap(sent, promoted.wall):+.2f}s past it;"
            f" {ledger.between(kill.monotonic, fault.settled.monotonic, 503)} answered 503"
        )


def longest_pause(moments: list[float], start: float, end: float) -> float:
    """The longest time without one of ``moments`` from ``start`` to ``end``."""
    inside = sorted([start, *(m for m in moments if start < m < end), end])
    return max(b - a for a, b in itertools.pairwise(inside))


def sent_moments(stack: Stack) -> list[float]:
    """When the relays marked each outbox message sent (the time they wrote)."""
    with stack.database.connect() as connection:
        sent = connection.execute(text("SELECT sent_at FROM outbox WHERE sent_at IS NOT NULL"))
        return [row[0].timestamp() for row in sent]


def publish_moments(stack: Stack) -> list[float]:
    """When each line_allocated entry was added to the master's stream (its id's time)."""
    host, port = stack.sentinels.master()
    entries = redis.Redis(host, port).xrange("line_allocated")
    return [int(entry_id.split(b"-")[0]) / 1000 for entry_id, _ in entries]


def check_the_answers(load: Load) -> None:
    """No 500, no request without an answer, none slower than the statement timeout
    allows; a refusal is only ever "out of stock", and only where stock is scarce."""
    answers = load.ledger.answers
    unexpected = [a for a in answers if a.status not in (202, 409, 503)]
    assert unexpected == [], unexpected[:5]
    slowest = max(a.ended.monotonic - a.started for a in answers)
    assert slowest < STATEMENT_TIMEOUT_MS / 1000 + 1, f"a request took {slowest:.2f}s"
    refused = load.ledger.with_status(409)
    assert {a.sku for a in refused} <= set(SCARCE)
    assert all(str(a.body["message"]).startswith("Out of stock") for a in refused)


def check_the_gaps(stack: Stack, faults: list[Fault], load: Load) -> None:
    """After each promotion the APIs write, and the relays publish, within the limit;
    while Redis failed over, writes went on."""
    database_faults, redis_fault = [faults[0], faults[2]], faults[1]
    writes, marked = [a.ended.monotonic for a in load.ledger.acknowledged()], sent_moments(stack)
    for fault in database_faults:
        assert gap(writes, fault.promoted.monotonic) < GAP_LIMIT, f"API after {fault.what}"
        assert gap(marked, fault.promoted.wall) < GAP_LIMIT, f"relays after {fault.what}"
    added, promoted = publish_moments(stack), redis_fault.promoted.wall
    assert gap(added, promoted) < GAP_LIMIT, "relays after Redis"
    lost = load.ledger.between(redis_fault.kill.monotonic, redis_fault.promoted.monotonic, 503)
    assert lost == 0, "writes failed while Redis had no master"


def gap(moments: list[float], promoted: float) -> float:
    """Seconds from ``promoted`` to the first of ``moments`` at or after it."""
    first = first_after(moments, promoted)
    assert first is not None, "nothing happened after the promotion"
    return first - promoted


def check_every_acknowledged_allocation_is_there_and_nothing_oversold(
    stack: Stack, load: Load
) -> None:
    with stack.database.connect() as connection:
        allocated = dict(
            connection.execute(
                text(
                    "SELECT a.orderid, b.reference FROM allocations a"
                    " JOIN batches b ON b.id = a.batch_id"
                )
            ).all()
        )
        oversold = connection.execute(
            text(
                "SELECT reference FROM batches b WHERE allocated_quantity > purchased_quantity"
                " OR allocated_quantity <> (SELECT coalesce(sum(qty), 0) FROM allocations"
                " WHERE batch_id = b.id)"
            )
        ).all()
    acknowledged = load.ledger.acknowledged()
    lost = [a for a in acknowledged if allocated.get(a.orderid) != a.body["batchref"]]
    assert lost == [], lost[:5]
    assert oversold == []
    scarce_sold = sum(1 for a in acknowledged if a.sku in SCARCE)
    assert scarce_sold == len(SCARCE) * SCARCE_UNITS  # every scarce unit, once


def check_every_event_is_on_the_promoted_master(stack: Stack) -> None:
    """Every line_allocated of a committed allocation is in the stream of the master
    the Sentinels promoted; a message went twice only around a fault; and the
    consumers met no change twice (their group went on where it was)."""

    def unsent() -> int:
        with stack.database.connect() as connection:
            return int(
                connection.execute(
                    text("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                ).scalar_one()
            )

    wait_until("the outbox drained", lambda: unsent() == 0, 30, detail=lambda: f"{unsent()} left")
    with stack.database.connect() as connection:
        committed = connection.execute(
            text("SELECT message_id FROM outbox WHERE channel = 'line_allocated'")
        ).scalars()
        expected = set(committed)
    host, port = stack.sentinels.master()
    entries = redis.Redis(host, port).xrange("line_allocated")
    published = [json.loads(fields[b"data"])["message_id"] for _, fields in entries]
    assert sorted(expected - set(published)) == []
    assert len(published) - len(set(published)) <= 5 * 100  # a few batches, at most
    duplicates = sum(
        metric_total(c.metrics_url, 'allocation_consumer_messages_total{outcome="duplicate"}')[0]
        for c in stack.consumers
    )
    assert duplicates == 0


def check_the_servers_each_process_follows(stack: Stack) -> None:
    """Every process names the new servers, counted the failovers it saw, and the
    relays LISTEN on the new primary; the old primary is back as a secondary."""
    formation = stack.formation
    converged = [("primary", "primary"), ("secondary", "secondary")]
    wait_until("a converged formation", lambda: sorted(formation.states().values()) == converged)
    primary = formation.primary()
    assert primary is not None
    port = formation.nodes[primary].port
    master_host, master_port = stack.sentinels.master()
    for api in stack.apis:
        body = requests.get(f"{api.url}/ready", timeout=10).json()
        assert body["database"] == {"host": "127.0.0.1", "port": port, "primary": True}, body
        assert body["redis"] == {"host": master_host, "port": master_port}, body
        assert metric_total(api.url, "allocation_database_failovers_total")[0] >= 1
    for worker in stack.workers:
        assert metric_total(worker.metrics_url, "allocation_database_failovers_total")[0] >= 1
        assert metric_total(worker.metrics_url, "allocation_redis_failovers_total")[0] >= 1
    for relay in stack.relays:
        assert f"listening for new outbox messages on 127.0.0.1:{port}" in relay.output()
    for service in [*stack.apis, *stack.workers]:
        assert "Traceback" not in service.output(), service.tail()
        assert service.stop(signal.SIGTERM) == 0, service.tail()
